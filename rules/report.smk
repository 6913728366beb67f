# -- tables, figures, report: read the per-image CSVs, timings and training logs under results/<profile>.
# `params.cfg` hashes the configuration sections each command reads, so e.g. a new `report.bootstrap`
# reruns the tables (and what depends on them) and a new `timing.runs` reruns the timing jobs.
# The three are local rules: on a cluster they run beside Snakemake (a second or three each, no torch)
# instead of waiting in the queue for a node at the very end of the DAG.


rule tables:
    input:
        unpack(aggregate_inputs),
    output:
        directory(f"{R}/tables"),
    params:
        config=CONFIG_FILE,
        cfg=config_hash("report.bootstrap", "report.seed", "fig5", "seeds", "train.seed"),
        results=results_dir,
    localrule: True
    resources:
        **cluster_resources("tables"),
    log:
        f"{R}/logs/tables.log",
    benchmark:
        f"{R}/benchmarks/tables.tsv"
    shell:
        "deblurbench tables --config {params.config:q} --results {params.results:q} --out {output:q} > {log:q} 2>&1"


rule figures:
    input:
        unpack(aggregate_inputs),
        tables=f"{R}/tables",
    output:
        directory(f"{R}/figures"),
    params:
        config=CONFIG_FILE,
        cfg=config_hash("data", "report.figure_images", "fig5"),
        results=results_dir,
    localrule: True
    resources:
        **cluster_resources("figures"),
    log:
        f"{R}/logs/figures.log",
    benchmark:
        f"{R}/benchmarks/figures.tsv"
    shell:
        "deblurbench figures --config {params.config:q} --results {params.results:q} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        tables=f"{R}/tables",
        figures=f"{R}/figures",
    output:
        f"{R}/report/index.html",
    params:
        config=CONFIG_FILE,
        # The report shows the whole configuration (banner, notes, the resolved file): all of it.
        cfg=config_hash(*sorted(CFG)),
        results=lambda w, output: str(Path(output[0]).parent.parent),
    localrule: True
    resources:
        **cluster_resources("report"),
    log:
        f"{R}/logs/report.log",
    shell:
        "deblurbench report --config {params.config:q} --results {params.results:q} --out {output:q} > {log:q} 2>&1"
