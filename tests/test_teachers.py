"""Teachers: the synthetic world as Teacher2D/Prior3D, and the real teachers' wrappers on tiny
randomly initialised pipelines built from configs and loaded back from local folders."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from live3dpe.model import cameras
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES
from live3dpe.train.protocols import Prior3D, Teacher2D
from live3dpe.train.teachers import ReferenceTeacher, SynthWorld, from_uint8, style_for_instruction


def test_synth_world_is_both_teachers_with_ground_truth():
    world = SynthWorld(resolution=32)
    assert isinstance(world, Teacher2D) and isinstance(world, Prior3D)
    person = sample_person(5)
    label = cameras.Camera.from_yaw_pitch(0.2, 0.05).label
    image = world.photograph(person, label[0])
    phrase = STYLES["red_hair"].heldout_phrases[0]
    edited = world.edit(image, phrase)
    truth = from_uint8(render(STYLES["red_hair"].apply(person), label[0].numpy(), 32, supersample=1).image[None])
    assert torch.equal(edited, truth)
    assert not torch.equal(edited, image)
    novel = cameras.Camera.from_yaw_pitch(torch.tensor([-0.4]), torch.tensor([0.0])).label[None]
    mv = world.views(image, label, novel)
    assert mv.images.shape == (1, 2, 3, 32, 32) and mv.depths.shape == (1, 2, 1, 32, 32)
    assert torch.equal(mv.images[:, 0], image)
    assert not torch.equal(mv.images[:, 1], image)
    with pytest.raises(KeyError):
        world.edit(torch.zeros(1, 3, 32, 32), phrase)
    with pytest.raises(ValueError):
        style_for_instruction("make it look like a potato")


def _tiny_ip2p(path):
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # a hand-made byte-level BPE vocabulary: enough to tokenise the test instructions offline
    words = ["make", "it", "red", "blue", "the", "hair"]
    letters = sorted({c for w in words for c in w})
    vocab = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters), *(w + "</w>" for w in words)]
    merges = []
    for w in words:  # merge left to right: m+a, ma+k, mak+e</w>
        for i in range(1, len(w)):
            left, right = w[:i], (w[i] + "</w>" if i == len(w) - 1 else w[i])
            merges.append((left, right))
            if i < len(w) - 1:
                vocab.append(w[: i + 1])
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, merges=merges, model_max_length=16)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )  # fmt: skip
    text = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        vocab_size=len(tokenizer), max_position_embeddings=16, projection_dim=16,
    ))  # fmt: skip
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(path)
    return path


def test_instruct_pix2pix_teacher_from_local_folder(tmp_path):
    from live3dpe.train.teachers import InstructPix2PixTeacher

    teacher = InstructPix2PixTeacher.from_pretrained(_tiny_ip2p(tmp_path / "ip2p"), steps=2)
    assert isinstance(teacher, Teacher2D)
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = teacher.edit(image, "make it red")
    assert a.shape == image.shape and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, teacher.edit(image, "make it red"))  # seeded: a pseudo-label is reproducible
    assert not torch.equal(a, teacher.edit(image, "make the hair blue"))  # the instruction matters


def _tiny_blip(path):
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "face", "with", "red", "hair", "gold", "statue"]
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}))
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                         max_position_embeddings=32, bos_token_id=2, sep_token_id=3, pad_token_id=0, encoder_hidden_size=16),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    BlipForConditionalGeneration(cfg).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_blip_captioner_and_reference_teacher(tmp_path):
    from live3dpe.train.teachers import BlipCaptioner

    captioner = BlipCaptioner.from_pretrained(_tiny_blip(tmp_path / "blip"), max_new_tokens=4)
    refs = from_uint8(np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8))
    captions = captioner.caption(refs)
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)

    class Recorder:
        def edit(self, image, instruction):
            self.instruction = instruction
            return -image

    rec = Recorder()
    teacher = ReferenceTeacher(rec, captioner)
    out = teacher.edit_like(torch.zeros(1, 3, 8, 8) + 0.5, refs[:1])
    assert torch.equal(out, torch.full((1, 3, 8, 8), -0.5))
    assert rec.instruction.endswith(captions[0])
