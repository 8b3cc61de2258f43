"""Scale-out settings: SLURM job scripts carry the GPU request; bad config files are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.task_runners import gpu_annotation, load_slurm_config, make_task_runner, slurm_cluster_kwargs

EXAMPLE = Path(__file__).resolve().parents[1] / "flows" / "slurm.example.yaml"


def test_example_slurm_config_renders_a_job_script_with_the_gpu_request():
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    config = load_slurm_config(EXAMPLE)
    kwargs = slurm_cluster_kwargs(config)
    # A scheduler bound to loopback: no real SLURM is needed to render the script.
    cluster = dask_jobqueue.SLURMCluster(**kwargs, scheduler_options={"host": "127.0.0.1", "dashboard_address": None})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    assert "#SBATCH --gres=gpu:1" in lines
    assert "#SBATCH -p gpu" in lines and "#SBATCH -A my-lab" in lines and "#SBATCH -t 04:00:00" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--resources GPU=1" in worker  # recognition tasks annotated GPU=1 land only on these workers
    assert any(line.startswith("source ") and line.endswith(".venv/bin/activate") for line in lines)


def test_cpu_only_slurm_config_has_no_gpu_request(tmp_path):
    cfg = tmp_path / "cpu.yaml"
    cfg.write_text("cluster:\n  cores: 2\n  memory: 4GB\ngpus_per_job: 0\n")
    kwargs = slurm_cluster_kwargs(load_slurm_config(cfg))
    assert "job_extra_directives" not in kwargs and "worker_extra_args" not in kwargs


@pytest.mark.parametrize("text, message", [
    ("cluster:\n  cores: 2\n  gpu: 1\n", "unknown cluster key(s) gpu"),
    ("clusters:\n  cores: 2\n", "unknown key(s) clusters"),
    ("cluster: [\n", "not valid YAML"),
    ("gpus_per_job: -1\n", "gpus_per_job must be >= 0"),
])
def test_bad_slurm_config_is_refused_naming_the_file(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError) as exc:
        load_slurm_config(cfg)
    assert str(cfg) in str(exc.value) and message in str(exc.value)


def test_runner_options_need_their_settings():
    with pytest.raises(ValueError, match="--dask-address is required"):
        make_task_runner("dask-address")
    with pytest.raises(ValueError, match="--slurm-config FILE is required"):
        make_task_runner("slurm")
    with pytest.raises(ValueError, match="unknown task runner"):
        make_task_runner("mpi")


def test_gpu_annotation_only_for_cuda():
    import dask

    with gpu_annotation("cuda"):
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    with gpu_annotation("cpu"):
        assert dask.get_annotations() == {}


def test_the_local_cluster_has_no_dashboard_and_no_fixed_port():
    """dask-local's scheduler: its HTTP server on a free loopback port (not 8787, where a second run at the
    same time collided), the dashboard's page absent."""
    import urllib.error
    import urllib.request

    from distributed import LocalCluster

    from flows.task_runners import local_cluster_kwargs

    with LocalCluster(**{**local_cluster_kwargs(2), "n_workers": 0}) as cluster:
        server = cluster.scheduler.http_server
        ports = [s.getsockname() for s in server._sockets.values()]
        assert ports and all(host == "127.0.0.1" and port != 8787 for host, port in ports)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{ports[0][1]}/status", timeout=10)
        assert err.value.code == 404
