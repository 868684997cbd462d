"""Which device a trial trains on: what Ray assigned it, not what torch happens to see."""

import pytest
import torch

from gzsl.errors import ConfigError
from gzsl.study import trial_device


def test_no_assigned_gpu_means_cpu_even_where_cuda_is_visible(monkeypatch):
    # A Ray 2.60 task that asked for no GPU keeps the node's CUDA_VISIBLE_DEVICES.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trial_device([]) == "cpu"


def test_an_assigned_gpu_means_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trial_device([0]) == "cuda"
    assert trial_device(["1"]) == "cuda"


def test_an_assigned_gpu_without_cuda_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"Ray assigned GPU\(s\) \[0\].*\[resources\] gpu = 0"):
        trial_device([0])


def test_real_ray_tasks_get_the_device_of_their_request(monkeypatch):
    """A real local Ray with one (logical) GPU: the task that asked for it is told so, the task
    that asked for none trains on CPU although the node's CUDA_VISIBLE_DEVICES names a GPU."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=0.5, num_gpus=0)
        def cpu_task():
            return ray.get_gpu_ids(), trial_device(ray.get_gpu_ids())

        @ray.remote(num_cpus=0.5, num_gpus=1)
        def gpu_task():
            return ray.get_gpu_ids()

        gpu_ids, device = ray.get(cpu_task.remote())
        assert gpu_ids == [] and device == "cpu"
        assert ray.get(gpu_task.remote()) in ([0], ["0"])
    finally:
        ray.shutdown()
