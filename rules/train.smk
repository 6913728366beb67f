# -- train: one job per run of benchmark/runs.py (trained method x seed, and the Fig. 5 sweep over k).
# The job reads its run from the resolved configuration (`--run`); `params.cfg` hashes what it reads.
# On a GPU profile it starts through the device slot pool (benchmark/devices.py), one device per job.


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
        config=CONFIG_FILE,
        cfg=lambda w: run_hash(w.run),
        root=GOPRO_ROOT,
        device=CFG["device"],
        slot=lambda w: on_gpu(),
        out=lambda w, output: str(Path(output.weights).parent),
    wildcard_constraints:
        run="|".join(RUNS) or "NONE",
    threads: CFG["threads"]
    resources:
        **cluster_resources("train"),
        gpu=lambda w: gpu_jobs(),
    log:
        f"{R}/logs/train_{{run}}.log",
    benchmark:
        f"{R}/benchmarks/train_{{run}}.tsv"
    shell:
        "{params.slot} deblurbench train --config {params.config:q} --run {wildcards.run:q} --data {params.root:q} "
        "--cache {input.cache:q} --out {params.out:q} --device {params.device:q} --threads {threads} "
        "--resume --quiet > {log:q} 2>&1"
