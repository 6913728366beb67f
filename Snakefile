# The MSR2B reproduction, as a map: fetch/synthesise -> prepare -> train -> restore -> score ->
# time -> tables -> figures -> report. Each rule calls one `deblurbench` subcommand; every product
# lies under results/<profile>/. Methods come from the registry (benchmark/registry.py), training runs
# (method x seed, the Fig. 5 sweep) from benchmark/runs.py.
#
#   snakemake --cores all                          # quick profile (default), CPU, minutes
#   snakemake --cores all --config profile=paper   # GOPRO + Köhler, the paper's schedule, GPU
#   snakemake --cores all --config 'train={epochs_constant: 3}'   # any value, merged into the profile
#   snakemake --cores all --resources gpu=4 --config profile=paper   # 4 GPU jobs at once, one device each
#
# `snakemake --lint` reports one finding per rule, accepted on purpose: "Specify a conda environment
# or container for each rule". Every rule runs the `deblurbench` package of the environment the
# workflow is started from (`pip install -e .`, pinned in pyproject.toml); a per-rule conda file would
# be a second, unpinned description of the same software.


from snakemake.logging import logger


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


onstart:
    check_device()
    write_resolved_config()


onsuccess:
    # Where to look, in Snakemake's own log stream, just before its closing "Complete log" line (only when
    # the report exists: not after a run of other targets).
    if Path(f"{R}/report/index.html").exists():
        logger.info(f"\nThe report of profile {PROFILE}: {Path(R, 'report', 'index.html').resolve()} "
                    f"(every number as CSV beside it)")


rule all:
    input:
        f"{R}/report/index.html",


# The authors' released weights: after `rule all`, which must stay the first rule (the default target).
include: "rules/weights.smk"
