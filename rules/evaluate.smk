# -- restore, score, time. Every evaluated name (each classical method, and each trained method once per
# seed: msr2b, msr2b-s1, ...) is restored and scored on every test set (GOPRO-like, Köhler-like, and for
# the main model also GOPRO's blur_gamma inputs, for the metric audit), in shards of
# `evaluation.shard_size` images: one restore and one score job per shard (benchmark/evaluate.py). A
# restore shard writes its images under restored/<name>/<set>/ as it goes and resumes a killed run where
# it stopped; its manifest, the rule's output, is written last. Only jobs that run a network take the
# `gpu` resource; scoring and classical methods do not.


rule restore:
    input:
        data=list(DATA_READY.values()),
        weights=lambda w: weights_of(w.method),
        kernels=lambda w: pan_kernels(w.method),
        gmm=lambda w: epll_ready(method_of(w.method)),
    output:
        f"{R}/restored/{{method}}/shard-{{shard}}.json",
    params:
        config=CONFIG_FILE,
        cfg=lambda w: config_hash(f"methods.{method_of(w.method)}", "device"),
        method=lambda w: method_of(w.method),
        sets=lambda w: test_set_args(w.method),
        weights=weights_args,
        kernels=kernels_args,
        shard=shard_arg,
        out=lambda w: f"{R}/restored/{w.method}",
        device=CFG["device"],
        slot=lambda w: on_gpu(w.method),
    wildcard_constraints:
        method="|".join(EVALUATED),
        shard=SHARD_TAG,
    threads: CFG["threads"]
    resources:
        **cluster_resources("restore"),
        gpu=lambda w: gpu_jobs(w.method),
    log:
        f"{R}/logs/restore_{{method}}_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/restore_{{method}}_{{shard}}.tsv"
    shell:
        "{params.slot} deblurbench restore --config {params.config:q} --method {params.method:q} "
        "{params.weights:q} {params.kernels:q} {params.sets:q} --shard {params.shard:q} --out {params.out:q} "
        "--manifest {output:q} --device {params.device:q} --threads {threads} --quiet > {log:q} 2>&1"


rule score:
    input:
        data=list(DATA_READY.values()),
        restored=f"{R}/restored/{{method}}/shard-{{shard}}.json",
    output:
        directory(f"{R}/scores/{{method}}/shard-{{shard}}"),
    params:
        method=lambda w: method_of(w.method),
        sets=lambda w: test_set_args(w.method),
        shard=shard_arg,
        restored=lambda w: f"{R}/restored/{w.method}",
        cw_ssim=["--cw-ssim"] if CFG["report"].get("cw_ssim", True) else [],
    wildcard_constraints:
        method="|".join(EVALUATED),
        shard=SHARD_TAG,
    resources:
        **cluster_resources("score"),
    log:
        f"{R}/logs/score_{{method}}_{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/score_{{method}}_{{shard}}.tsv"
    shell:
        "deblurbench score {params.sets:q} --restored {params.restored:q} --shard {params.shard:q} "
        "--method {params.method:q} {params.cw_ssim:q} --out {output:q} --quiet > {log:q} 2>&1"


rule time:
    input:
        weights=lambda w: weights_of(w.method),
        gmm=lambda w: epll_ready(w.method),
    output:
        f"{R}/timing/{{method}}.json",
    params:
        config=CONFIG_FILE,
        cfg=lambda w: config_hash("timing", f"methods.{w.method}", "device"),
        weights=weights_args,
        device=CFG["device"],
        slot=lambda w: on_gpu(w.method),
    wildcard_constraints:
        method="|".join(METHODS),
    # All cores: nothing else runs beside a timing job, so the figures are not skewed by contention
    # (the smoke profile, whose numbers mean nothing, gives that up for speed: timing.exclusive).
    threads: workflow.cores if CFG["timing"].get("exclusive", True) else 1
    resources:
        **cluster_resources("time"),
        gpu=lambda w: gpu_jobs(w.method),
    log:
        f"{R}/logs/time_{{method}}.log",
    benchmark:
        f"{R}/benchmarks/time_{{method}}.tsv"
    shell:
        "{params.slot} deblurbench time --config {params.config:q} --method {wildcards.method:q} "
        "{params.weights:q} --device {params.device:q} --threads {threads} --out {output:q} > {log:q} 2>&1"
