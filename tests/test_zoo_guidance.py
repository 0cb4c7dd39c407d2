"""The embedded pipelines sample at their model card's guidance scale when the caller gives none."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from smoothcache import zoo  # noqa: E402

# model -> (pipeline loader, the model card's guidance scale, output attribute)
MODELS = {
    "digits": (zoo.digits_pipeline, zoo.DIGITS_GUIDANCE_SCALE, "images"),
    "audio": (zoo.audio_pipeline, zoo.AUDIO_GUIDANCE_SCALE, "audios"),
    "video": (zoo.video_pipeline, zoo.VIDEO_GUIDANCE_SCALE, "frames"),
}


def _sample(pipe, output: str, **guidance) -> torch.Tensor:
    out = pipe(class_labels=[3, 7], num_inference_steps=3, generator=torch.Generator().manual_seed(0),
               output_type="pt", **guidance)
    return getattr(out, output)


@pytest.mark.parametrize("model", list(MODELS))
def test_calling_without_guidance_uses_the_model_cards_scale(model):
    load, card, output = MODELS[model]
    pipe = load()
    default = _sample(pipe, output)
    assert torch.equal(default, _sample(pipe, output, guidance_scale=card))
    if card != 4.0:  # DiTPipeline's own default, which the digits model must not inherit
        assert not torch.equal(default, _sample(pipe, output, guidance_scale=4.0))


def test_the_card_scales_differ_from_dit_pipelines_default_where_the_test_relies_on_it():
    # control for the test above: the comparison with 4.0 runs for the digits and the audio model
    assert zoo.DIGITS_GUIDANCE_SCALE != 4.0 and zoo.AUDIO_GUIDANCE_SCALE != 4.0


def test_digits_pipeline_round_trips_through_save_pretrained(tmp_path):
    from diffusers import DiffusionPipeline, DiTPipeline

    pipe = zoo.digits_pipeline()
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    shipped = json.loads((zoo.DIGITS_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "DiTPipeline" and index["id2label"] == shipped["id2label"]

    reloaded = zoo.digits_pipeline(folder=tmp_path)
    assert reloaded.get_label_ids(["3", "7"]) == [3, 7]
    assert torch.equal(_sample(reloaded, "images"), _sample(pipe, "images"))
    plain = DiffusionPipeline.from_pretrained(
        str(tmp_path), local_files_only=True
    )  # diffusers alone loads it
    assert type(plain) is DiTPipeline
    card = zoo.DIGITS_GUIDANCE_SCALE
    assert torch.equal(_sample(plain, "images", guidance_scale=card), _sample(pipe, "images"))


def test_digits_pipeline_names_a_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved digits pipeline"):
        zoo.digits_pipeline(folder=tmp_path)
