# -- fetch / synthesise / prepare: the test and training data (GOPRO, Köhler, and where the profile names them
# HIDE and RealBlur), and the crop cache training reads.


rule synthesise:
    output:
        f"{R}/data/synthetic.json",
    params:
        config=CONFIG_FILE,
        cfg=config_hash("data.synthetic"),
        out=lambda w, output: str(Path(output[0]).parent),
    resources:
        **cluster_resources("synthesise"),
    log:
        f"{R}/logs/synthesise.log",
    benchmark:
        f"{R}/benchmarks/synthesise.tsv"
    shell:
        "deblurbench synthesise --config {params.config:q} --out {params.out:q} --quiet > {log:q} 2>&1"


rule fetch:
    output:
        f"{R}/data/{{dataset}}.fetched.json",
    params:
        sources=lambda w: fetch_args(w.dataset),
    wildcard_constraints:
        dataset="|".join([*DATASETS, "vgg19", "epll-gmm"]),
    retries: 2
    localrule: True
    resources:
        **cluster_resources("fetch"),
    log:
        f"{R}/logs/fetch_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/fetch_{{dataset}}.tsv"
    shell:
        "deblurbench fetch {wildcards.dataset:q} {params.sources:q} --record {output:q} > {log:q} 2>&1"


rule prepare:
    input:
        f"{R}/data/{{dataset}}.fetched.json",
    output:
        f"{R}/data/{{dataset}}.verified.txt",
    params:
        root=lambda w: DATA_ROOTS[w.dataset],
        verify=lambda w: verify_args(w.dataset),
    wildcard_constraints:
        dataset="|".join(DATASETS),
    resources:
        **cluster_resources("prepare"),
    log:
        f"{R}/logs/prepare_{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/prepare_{{dataset}}.tsv"
    shell:
        "deblurbench prepare --dataset {wildcards.dataset:q} --root {params.root:q} {params.verify:q} "
        "--out {output:q} > {log:q} 2>&1"


rule crop_cache:
    input:
        DATA_READY["gopro"],
    output:
        directory(f"{R}/cache/train"),
    params:
        root=GOPRO_ROOT,
        blur=CFG["data"]["blur_folder"],
    resources:
        **cluster_resources("crop_cache"),
    log:
        f"{R}/logs/crop_cache.log",
    benchmark:
        f"{R}/benchmarks/crop_cache.tsv"
    shell:
        "deblurbench cache --data {params.root:q} --blur-folder {params.blur:q} --out {output:q} > {log:q} 2>&1"
