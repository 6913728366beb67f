# The authors' released GOPRO models (benchmark/weights.py RELEASES), scored under this suite's protocol
# beside the retrained methods: fetch weights -> restore -> score -> time, one fetch and time job per release,
# one restore and score job per evaluation shard (as rules/evaluate.smk).
# Profiles list them under `weights.releases` (the paper profile: all four; offline profiles: none, and
# the report's banner says so). Products lie under results/<profile>/releases/; the helpers that name
# them are in rules/common.smk.


rule fetch_weights:
    output:
        record=f"{RR}/{{release}}.fetched.json",
        weights=f"{WEIGHTS_ROOT}/{{release}}.safetensors",
    params:
        args=lambda w: release_fetch_args(w.release),
    wildcard_constraints:
        release="|".join(RELEASES) or "NONE",
    retries: 2
    localrule: True
    resources:
        **cluster_resources("fetch_weights"),
    log:
        f"{R}/logs/fetch_weights_{{release}}.log",
    benchmark:
        f"{R}/benchmarks/fetch_weights_{{release}}.tsv"
    shell:
        "deblurbench fetch weights {wildcards.release:q} {params.args:q} --record {output.record:q} --quiet "
        "> {log:q} 2>&1"


rule restore_release:
    input:
        data=list(DATA_READY.values()),
        record=f"{RR}/{{release}}.fetched.json",
        weights=f"{WEIGHTS_ROOT}/{{release}}.safetensors",
        gmm=lambda w: epll_ready(_releases.release(w.release).method),
    output:
        f"{RR}/restored/{{release}}/shard-{{shard}}.json",
    params:
        config=CONFIG_FILE,
        cfg=config_hash("device"),
        method=lambda w: _releases.release(w.release).method,
        options=lambda w: release_options(w.release),
        sets=lambda w: test_set_args(w.release),
        shard=shard_arg,
        out=lambda w: f"{RR}/restored/{w.release}",
        device=CFG["device"],
        slot=on_gpu(),
    wildcard_constraints:
        release="|".join(RELEASES) or "NONE",
        shard=SHARD_TAG,
    threads: CFG["threads"]
    resources:
        **cluster_resources("restore_release"),
        gpu=gpu_jobs(),
    log:
        f"{R}/logs/restore_release_{{release}}_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/restore_release_{{release}}_{{shard}}.tsv"
    shell:
        "{params.slot} deblurbench restore --config {params.config:q} --method {params.method:q} "
        "--weights {input.weights:q} --options {params.options:q} {params.sets:q} --shard {params.shard:q} "
        "--out {params.out:q} --manifest {output:q} --device {params.device:q} --threads {threads} --quiet "
        "> {log:q} 2>&1"


rule score_release:
    input:
        data=list(DATA_READY.values()),
        restored=f"{RR}/restored/{{release}}/shard-{{shard}}.json",
    output:
        directory(f"{RR}/scores/{{release}}/shard-{{shard}}"),
    params:
        sets=lambda w: test_set_args(w.release),
        shard=shard_arg,
        restored=lambda w: f"{RR}/restored/{w.release}",
        cw_ssim=["--cw-ssim"] if CFG["report"].get("cw_ssim", True) else [],
    wildcard_constraints:
        release="|".join(RELEASES) or "NONE",
        shard=SHARD_TAG,
    resources:
        **cluster_resources("score_release"),
    log:
        f"{R}/logs/score_release_{{release}}_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/score_release_{{release}}_{{shard}}.tsv"
    shell:
        "deblurbench score {params.sets:q} --restored {params.restored:q} --shard {params.shard:q} "
        "--method authors:{wildcards.release:q} {params.cw_ssim:q} --out {output:q} --quiet > {log:q} 2>&1"


rule time_release:
    input:
        weights=f"{WEIGHTS_ROOT}/{{release}}.safetensors",
        gmm=lambda w: epll_ready(_releases.release(w.release).method),
    output:
        f"{RR}/timing/{{release}}.json",
    params:
        config=CONFIG_FILE,
        cfg=config_hash("timing", "device"),
        method=lambda w: _releases.release(w.release).method,
        options=lambda w: release_options(w.release),
        device=CFG["device"],
        slot=on_gpu(),
    wildcard_constraints:
        release="|".join(RELEASES) or "NONE",
    threads: workflow.cores if CFG["timing"].get("exclusive", True) else 1
    resources:
        **cluster_resources("time_release"),
        gpu=gpu_jobs(),
    log:
        f"{R}/logs/time_release_{{release}}.log",
    benchmark:
        f"{R}/benchmarks/time_release_{{release}}.tsv"
    shell:
        "{params.slot} deblurbench time --config {params.config:q} --method {params.method:q} "
        "--weights {input.weights:q} --options {params.options:q} --device {params.device:q} --threads {threads} "
        "--out {output:q} > {log:q} 2>&1"
