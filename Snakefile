# The MSR2B reproduction, as a map: fetch/synthesise -> prepare -> train -> restore -> score ->
# time -> tables -> figures -> report. Each rule calls one `deblurbench` subcommand; every product
# lies under results/<profile>/. Methods come from the registry (benchmark/registry.py).
#
#   snakemake --cores all                          # quick profile (default), CPU, minutes
#   snakemake --cores all --config profile=paper   # GOPRO + Köhler, the paper's schedule, GPU
#   snakemake --cores all --config 'train={epochs_constant: 3}'   # any value, merged into the profile

include: "rules/common.smk"


onstart:
    check_device()


rule all:
    input:
        f"{R}/report/index.html",


# -- fetch / synthesise ---------------------------------------------------------------------------
rule synthesise:
    output:
        f"{R}/data/synthetic.json",
    params:
        synthetic=json.dumps(CFG["data"].get("synthetic", {}), sort_keys=True),
        out=f"{R}/data",
    log:
        f"{R}/logs/synthesise.log",
    benchmark:
        f"{R}/benchmarks/synthesise.tsv"
    shell:
        "deblurbench synthesise --out {params.out} --params '{params.synthetic}' --quiet > {log} 2>&1"


rule fetch:
    output:
        f"{R}/data/{{dataset}}.fetched.json",
    params:
        sources=lambda w: fetch_flags(w.dataset),
    wildcard_constraints:
        dataset="gopro|kohler|vgg19",
    retries: 2
    localrule: True
    log:
        f"{R}/logs/fetch_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/fetch_{{dataset}}.tsv"
    shell:
        "deblurbench fetch {wildcards.dataset} {params.sources} --record {output} > {log} 2>&1"


# -- prepare --------------------------------------------------------------------------------------
rule prepare:
    input:
        f"{R}/data/{{dataset}}.fetched.json",
    output:
        f"{R}/data/{{dataset}}.verified.txt",
    params:
        root=lambda w: DATA_ROOTS[w.dataset],
        verify=lambda w: verify_flag(w.dataset),
    wildcard_constraints:
        dataset="gopro|kohler",
    log:
        f"{R}/logs/prepare_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/prepare_{{dataset}}.tsv"
    shell:
        "deblurbench prepare --dataset {wildcards.dataset} --root {params.root} {params.verify} --out {output} "
        "> {log} 2>&1"


rule crop_cache:
    input:
        DATA_READY["gopro"],
    output:
        directory(f"{R}/cache/train"),
    params:
        root=GOPRO_ROOT,
        blur=CFG["data"]["blur_folder"],
    log:
        f"{R}/logs/crop_cache.log",
    benchmark:
        f"{R}/benchmarks/crop_cache.tsv"
    shell:
        "deblurbench cache --data {params.root} --blur-folder {params.blur} --out {output} > {log} 2>&1"


# -- train ----------------------------------------------------------------------------------------
rule train:
    input:
        data=DATA_READY["gopro"],
        cache=f"{R}/cache/train",
        vgg19=VGG19_READY,
    output:
        weights=f"{R}/train/{{run}}/model.pt",
        log=f"{R}/train/{{run}}/log.csv",
        val=f"{R}/train/{{run}}/val.csv",
        info=f"{R}/train/{{run}}/run.json",
    params:
        method=lambda w: method_of(w.run),
        method_config=lambda w: method_config(w.run),
        train=json.dumps(CFG["train"], sort_keys=True),
        root=GOPRO_ROOT,
        blur=CFG["data"]["blur_folder"],
        validation=CFG["data"]["validation_images"],
        device=device_flag(),
        out=lambda w: f"{R}/train/{w.run}",
    wildcard_constraints:
        run="|".join(RUNS) or "NONE",
    threads: CFG["threads"]
    resources:
        gpu=lambda w: 1 if CFG["device"] == "cuda" else 0,
    log:
        f"{R}/logs/train_{{run}}.log",
    benchmark:
        f"{R}/benchmarks/train_{{run}}.tsv"
    shell:
        "deblurbench train --method {params.method} --method-config '{params.method_config}' "
        "--train '{params.train}' --data {params.root} --cache {input.cache} --blur-folder {params.blur} "
        "--validation-images {params.validation} --out {params.out} {params.device} --threads {threads} "
        "--resume --quiet > {log} 2>&1"


# -- restore and score ----------------------------------------------------------------------------
# One job per method covers every test set (GOPRO-like, Köhler-like, and for the main model also
# GOPRO's blur_gamma inputs, for the metric audit).
rule restore:
    input:
        data=list(DATA_READY.values()),
        weights=lambda w: weights_of(w.method),
    output:
        directory(f"{R}/restored/{{method}}"),
    params:
        options=lambda w: method_config(w.method),
        sets=lambda w: test_set_flags(w.method),
        weights=weights_flag,
        device=device_flag(),
    threads: CFG["threads"]
    resources:
        gpu=lambda w: 1 if CFG["device"] == "cuda" and w.method in TRAINED else 0,
    log:
        f"{R}/logs/restore_{{method}}.log",
    benchmark:
        f"{R}/benchmarks/restore_{{method}}.tsv"
    shell:
        "deblurbench restore --config {CONFIG_FILE} --method {wildcards.method} {params.weights} "
        "--options '{params.options}' {params.sets} --out {output} {params.device} --threads {threads} "
        "--quiet > {log} 2>&1"


rule score:
    input:
        data=list(DATA_READY.values()),
        restored=f"{R}/restored/{{method}}",
    output:
        directory(f"{R}/scores/{{method}}"),
    params:
        sets=lambda w: test_set_flags(w.method),
        cw_ssim="--cw-ssim" if CFG["report"].get("cw_ssim", True) else "",
    log:
        f"{R}/logs/score_{{method}}.log",
    benchmark:
        f"{R}/benchmarks/score_{{method}}.tsv"
    shell:
        "deblurbench score {params.sets} --restored {input.restored} --method {wildcards.method} "
        "{params.cw_ssim} --out {output} --quiet > {log} 2>&1"


# -- time -----------------------------------------------------------------------------------------
rule time:
    input:
        weights=lambda w: weights_of(w.method),
    output:
        f"{R}/timing/{{method}}.json",
    params:
        options=lambda w: method_config(w.method),
        weights=weights_flag,
        device=device_flag(),
    # All cores: nothing else runs beside a timing job, so the figures are not skewed by contention
    # (the smoke profile, whose numbers mean nothing, gives that up for speed: timing.exclusive).
    threads: workflow.cores if CFG["timing"].get("exclusive", True) else 1
    resources:
        gpu=lambda w: 1 if CFG["device"] == "cuda" else 0,
    log:
        f"{R}/logs/time_{{method}}.log",
    benchmark:
        f"{R}/benchmarks/time_{{method}}.tsv"
    shell:
        "deblurbench time --config {CONFIG_FILE} --method {wildcards.method} {params.weights} "
        "--options '{params.options}' {params.device} --threads {threads} --out {output} > {log} 2>&1"


# -- tables, figures, report ----------------------------------------------------------------------
def aggregate_inputs(wildcards):
    return {
        "scores": [f"{R}/scores/{m.name}" for m in METHODS],
        "timing": [f"{R}/timing/{m.name}.json" for m in METHODS],
        "runs": [f"{R}/train/{r}/run.json" for r in RUNS],
        "restored": [f"{R}/restored/{m.name}" for m in METHODS],
        "releases": release_products(),  # rules/weights.smk
    }


rule tables:
    input:
        unpack(aggregate_inputs),
    output:
        directory(f"{R}/tables"),
    log:
        f"{R}/logs/tables.log",
    benchmark:
        f"{R}/benchmarks/tables.tsv"
    shell:
        "deblurbench tables --config {CONFIG_FILE} --results {R} --out {output} > {log} 2>&1"


rule figures:
    input:
        unpack(aggregate_inputs),
        tables=f"{R}/tables",
    output:
        directory(f"{R}/figures"),
    log:
        f"{R}/logs/figures.log",
    benchmark:
        f"{R}/benchmarks/figures.tsv"
    shell:
        "deblurbench figures --config {CONFIG_FILE} --results {R} --out {output} > {log} 2>&1"


rule report:
    input:
        tables=f"{R}/tables",
        figures=f"{R}/figures",
    output:
        f"{R}/report/index.html",
    params:
        # Not read by the command (it reads CONFIG_FILE): a changed configuration re-renders the report.
        resolved=json.dumps(CFG, sort_keys=True),
    log:
        f"{R}/logs/report.log",
    shell:
        "deblurbench report --config {CONFIG_FILE} --results {R} --out {output} > {log} 2>&1"


# -- the authors' released weights (after `rule all`, which must stay the first rule) -------------
include: "rules/weights.smk"
