"""The fidelity figures and the pipeline outputs they read (smoothcache.fidelity)."""

import math

import numpy as np
import pytest
import torch
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput, ImagePipelineOutput

from smoothcache.fidelity import as_output, flicker, log_spectral_distance, measure, psnr, snr, ssim


def test_psnr_of_a_known_error():
    a = torch.zeros(2, 1, 8, 8)
    b = a + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert math.isinf(psnr(a, a))


def test_ssim_drops_with_noise():
    a = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    noisy = (a + 0.2 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, noisy) < 0.9


def test_lsd_of_a_doubled_clip_is_6_db_and_snr_of_a_known_noise():
    clip = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0))  # no bin below the floor
    assert log_spectral_distance(clip, 2 * clip) == pytest.approx(6.02, abs=0.01)
    assert snr(clip, 1.1 * clip) == pytest.approx(20.0, abs=1e-4)


def test_flicker_is_one_for_the_same_motion_and_grows_with_jitter():
    video = torch.linspace(0, 1, 6).view(1, 6, 1, 1, 1).expand(2, 6, 1, 8, 8).contiguous()
    assert flicker(video, video) == pytest.approx(1.0)
    jitter = video.clone()
    jitter[:, ::2] += 0.5
    assert flicker(video, jitter) > 1.5


def test_as_output_reads_images_in_every_output_type():
    pt = torch.rand(2, 3, 8, 8)
    np_images = pt.permute(0, 2, 3, 1).numpy()
    assert as_output(ImagePipelineOutput(images=pt))[1].shape == (2, 3, 8, 8)
    kind, x = as_output(ImagePipelineOutput(images=np_images))
    assert kind == "image" and torch.allclose(x, pt)
    from PIL import Image

    pil = [Image.fromarray((im * 255).round().astype(np.uint8)) for im in np_images]
    assert torch.allclose(as_output(ImagePipelineOutput(images=pil))[1], pt, atol=1 / 255)


def test_as_output_reads_video_and_audio():
    frames = np.random.rand(2, 5, 8, 8, 1).astype(np.float32)  # output_type="np": (N, F, H, W, C)

    class VideoOut:
        pass

    out = VideoOut()
    out.frames = frames
    kind, x = as_output(out)
    assert kind == "video" and x.shape == (2, 5, 1, 8, 8)
    kind, x = as_output(AudioPipelineOutput(audios=np.zeros((3, 1, 100), dtype=np.float32)))
    assert kind == "audio" and x.shape == (3, 100)


@pytest.mark.parametrize("result", ["a string", {"text": "hi"}, torch.zeros(3, 4)])
def test_outputs_that_are_not_images_audio_or_video_are_refused(result):
    with pytest.raises(TypeError, match="not images, video frames or audio"):
        as_output(result)


def test_measure_gives_each_kind_its_figures_and_refuses_mismatches():
    images = torch.rand(2, 1, 16, 16)
    assert set(measure(images, images)) == {"psnr_db", "ssim"}
    audio = AudioPipelineOutput(audios=np.random.rand(2, 1, 800).astype(np.float32))
    assert set(measure(audio, audio)) == {"lsd_db", "snr_db"}
    with pytest.raises(ValueError, match="cannot compare"):
        measure(images, torch.rand(3, 1, 16, 16))
