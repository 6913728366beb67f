"""Every rule of the paper profile's DAG asks a cluster for the time and memory its configuration names
(`resources:` in config/paper.yaml): a rule left out would silently get the SLURM profile's
default-resources (60 minutes, 4 GB), too little for a GOPRO job."""

import re

import yaml
from workflow_run import REPO, snakemake


def dry_run_jobs(workdir, *config: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job of a dry run (the local default workflow profile, no cluster)."""
    out = snakemake(workdir, "-n", "--config", *config)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", out.stdout + out.stderr, flags=re.M):
        head = re.match(r"(?:local)?rule (\w+):$", block, re.M)
        if head:
            found = re.search(r"^\s+resources: (.*)$", block, re.M)
            pairs = (item.split("=", 1) for item in found.group(1).split(", ")) if found else ()
            jobs.append((head.group(1), dict(pairs)))
    return jobs


def test_every_rule_of_the_paper_dag_has_configured_resources(tmp_path):
    configured = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["resources"]
    jobs = [(rule, res) for rule, res in dry_run_jobs(tmp_path, "profile=paper") if rule != "all"]
    rules = {rule for rule, _ in jobs}
    assert {"train", "restore", "score", "time", "restore_release", "score_release", "time_release"} <= rules
    missing = sorted(rules - set(configured))
    assert not missing, f"rules of the paper DAG without resources in config/paper.yaml: {missing}"
    for rule, resources in jobs:
        for key in ("runtime", "mem_mb"):
            assert resources.get(key) == str(configured[rule][key]), (rule, key, resources)
