"""Plans checked against what they produce: over a sweep of budgets, the planner's calibrated error ranks the
plans as the fidelity of their outputs does (Spearman's rank correlation), on the embedded digits DiT."""

import contextlib

import pytest
import torch
from scipy.stats import spearmanr

from smoothcache import Calibrator, Schedule, SmoothCache
from smoothcache.fidelity import psnr

FRACTIONS = (0.85, 0.7, 0.6, 0.5, 0.42, 0.36)
LABELS = [0, 2, 4, 6, 8, 1, 3, 5]
BOUND = 0.9


@pytest.fixture(scope="module")
def digits():
    from smoothcache.zoo import digits_pipeline

    pipe = digits_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_planned_error_ranks_budgets_as_their_outputs_do(digits, scheduler):
    from diffusers import DPMSolverMultistepScheduler

    pipe = digits
    original = pipe.scheduler
    if scheduler == "dpm":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(original.config)
    try:

        def generate(seed, cache=None):
            with cache or contextlib.nullcontext():
                return pipe(class_labels=LABELS, num_inference_steps=20, output_type="pt",
                            generator=torch.manual_seed(seed)).images

        with Calibrator(pipe.transformer) as cal:
            generate(100)
        reference = generate(0)
        planned, measured = [], []
        for fraction in FRACTIONS:
            schedule = Schedule.for_budget(cal.profile, compute_fraction=fraction, cost="macs")
            planned.append(schedule.metadata["planned_error"])
            measured.append(-psnr(reference, generate(0, SmoothCache(pipe.transformer, schedule))))
    finally:
        pipe.scheduler = original
    assert planned == sorted(planned)  # a smaller budget never plans a smaller error
    rho = spearmanr(planned, measured).statistic
    assert rho >= BOUND, f"planned errors {planned} rank the outputs' PSNR {measured} with rho {rho:.2f}"
