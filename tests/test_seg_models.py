import copy

import pytest
import torch

from simmm.backbones import create_backbone
from simmm.errors import SimmmError
from simmm.models import (
    DECODERS,
    DeepLabV2,
    Encoder,
    PSPNet,
    RefineNet,
    Segmenter,
    create_segmenter,
)

R18 = [64, 128, 256, 512]
WIDTH = {"refinenet": 16, "deeplabv2": None, "pspnet": 16}


def _images(b=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g)


def _tiny(decoder, backbone="resnet18", **kw):
    torch.manual_seed(0)
    return create_segmenter(decoder, backbone=backbone, num_classes=5, features=WIDTH[decoder], **kw)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_output_at_input_size_and_features(decoder):
    model = _tiny(decoder)
    assert isinstance(model, Segmenter) and model.num_classes == 5
    expected_os = {"refinenet": 32, "deeplabv2": 8, "pspnet": 8}[decoder]
    assert model.encoder.output_stride == expected_os
    assert model.encoder.channels == R18 == model.feature_channels
    x = _images(h=64, w=96)
    logits = model(x)
    assert logits.shape == (2, 5, 64, 96) and torch.isfinite(logits).all()
    feats = model.forward_features(x)
    assert [f.shape[1] for f in feats] == R18
    for f, r in zip(feats, model.encoder.reductions):
        assert f.shape[-2:] == (64 // r, 96 // r)
    # odd input sizes still come back at input resolution
    assert model(_images(h=50, w=70)).shape == (2, 5, 50, 70)


def test_resnet101_channels_once():
    enc = Encoder("resnet101", pretrained="", output_stride=32)
    assert enc.channels == [256, 512, 1024, 2048]
    assert enc.reductions == [4, 8, 16, 32]
    feats = enc(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    # the decoders accept those widths (eval: PSPNet's 1×1 pyramid bin needs batch > 1 to train BatchNorm)
    for cls in (RefineNet, DeepLabV2, PSPNet):
        kw = {} if cls is DeepLabV2 else {"features": 8}
        out = cls(enc.channels, 3, **kw).eval()(feats)
        assert out.shape[:2] == (1, 3)


@pytest.mark.parametrize("os_,last,reductions", [(32, 2, [4, 8, 16, 32]), (16, 4, [4, 8, 16, 16]),
                                                 (8, 8, [4, 8, 8, 8])])
def test_output_strides(os_, last, reductions):
    enc = Encoder("resnet18", output_stride=os_)
    assert enc.reductions == reductions and enc.output_stride == os_
    feats = enc(torch.rand(1, 3, 64, 64))
    assert feats[-1].shape[-2:] == (last, last)
    assert feats[0].shape[-2:] == (16, 16)


def test_default_out_indices_are_the_last_four_levels():
    assert Encoder("resnet18").out_indices == (1, 2, 3, 4)
    enc = Encoder("test_convnext")  # a four-level timm model
    assert enc.out_indices == (0, 1, 2, 3) and enc.reductions == [4, 8, 16, 32]
    assert len(enc(torch.rand(1, 3, 32, 32))) == 4


def test_pretrained_file_with_dilation(tmp_path):
    src = create_backbone("resnet18", None)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    enc = Encoder("resnet18", pretrained=str(path), output_stride=8)
    assert enc.reductions == [4, 8, 8, 8]
    assert torch.equal(enc.body.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert enc.body.layer4[1].conv2.dilation == (4, 4)


def test_bad_output_stride():
    with pytest.raises(SimmmError, match="output_stride"):
        Encoder("resnet18", output_stride=4)


def test_decoder_output_strides():
    x = _images()
    for decoder, size in (("refinenet", 16), ("deeplabv2", 8), ("pspnet", 8)):
        model = _tiny(decoder)
        feats = model.forward_features(x)
        assert model.decoder(feats).shape[-2:] == (size, size)


def _step(model, x, seed=1):
    torch.manual_seed(seed)
    feats, logits = model.forward_with_features(x)
    loss = logits.logsumexp(1).mean() + sum(f.pow(2).mean() for f in feats)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return feats, logits, grads


@pytest.mark.parametrize("backbone,decoder", [("resnet18", "refinenet"), ("tf_efficientnet_lite0", "pspnet")])
def test_checkpointing_same_outputs_grads_and_bn_stats(backbone, decoder):
    torch.manual_seed(0)
    plain = create_segmenter(decoder, backbone=backbone, num_classes=5, features=8, output_stride=16)
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing(True)
    assert ckpt.encoder.checkpointing and not plain.encoder.checkpointing
    # the stages really are re-run in the backward pass
    segment = ckpt.encoder._segments[1]
    stage = segment.body.get_submodule(segment.names[-1])
    calls = []
    stage.register_forward_pre_hook(lambda *a: calls.append(1))
    x = _images()
    f0, l0, g0 = _step(plain, x)
    f1, l1, g1 = _step(ckpt, x)
    assert len(calls) == 2
    assert torch.equal(l0, l1)
    assert all(torch.equal(a, b) for a, b in zip(f0, f1))
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g0[k], g1[k], rtol=0, atol=0, msg=k)
    # BatchNorm running statistics are not updated twice by the recomputation
    s0, s1 = plain.state_dict(), ckpt.state_dict()
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    # no checkpointing under no_grad: plain forward
    with torch.no_grad():
        assert torch.equal(ckpt.eval()(x), plain.eval()(x))


def test_checkpointing_flag_through_builder():
    model = create_segmenter("deeplabv2", backbone="resnet18", num_classes=3, checkpointing=True)
    assert model.encoder.checkpointing
    model.set_grad_checkpointing(False)
    assert not model.encoder.checkpointing


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_forward_with_features_equals_separate_calls(decoder):
    model = _tiny(decoder).eval()
    x = _images()
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        feats, logits = model.forward_with_features(x)
        assert len(calls) == 1  # one encoder pass for both
        sep_feats = model.forward_features(x)
        sep_logits = model(x)
    assert all(torch.equal(a, b) for a, b in zip(feats, sep_feats))
    assert torch.equal(logits, sep_logits)
    with torch.no_grad():
        assert torch.equal(model.forward_normalized(model.normalize(x)), logits)


def test_unknown_decoder_lists_allowed():
    with pytest.raises(SimmmError) as e:
        create_segmenter("unet", backbone="resnet18")
    msg = str(e.value)
    assert "unet" in msg and all(name in msg for name in ("refinenet", "deeplabv2", "pspnet"))
    with pytest.raises(SimmmError, match="features"):
        create_segmenter("deeplabv2", backbone="resnet18", features=64)
    with pytest.raises(SimmmError, match="pspnet"):
        create_segmenter("pspnet", backbone="resnet18", no_such_option=1)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_all_parameters_get_gradients(decoder):
    model = _tiny(decoder, **({"aux": True} if decoder == "pspnet" else {}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = _images()
    target = torch.randint(0, 5, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    for step in range(2):  # zero-initialised residual branches receive gradients from the second step on
        opt.zero_grad()
        logits, aux = model(x, return_aux=True)
        loss = torch.nn.functional.cross_entropy(logits, target)
        if aux is not None:
            assert aux.shape == logits.shape
            loss = loss + 0.4 * torch.nn.functional.cross_entropy(aux, target)
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing
        opt.step()
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert not zero, zero[:5]


def test_pspnet_aux_off_by_default():
    model = _tiny("pspnet")
    assert model.decoder.aux_head is None
    logits, aux = model(_images(), return_aux=True)
    assert aux is None and logits.shape == (2, 5, 64, 64)


def test_channels_last():
    model = _tiny("refinenet").eval()
    x = _images()
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_refinenet_structure():
    dec = RefineNet(R18, 4, features=16)
    assert dec.refinenet4.fusion is None  # single path goes through unchanged
    assert len(dec.refinenet3.adapt) == 2 and len(dec.refinenet3.crp.convs) == 2
    assert dec.layer4_rn.out_channels == 32 and dec.layer1_rn.out_channels == 16
    assert len(RefineNet(R18, 4, features=8, crp_blocks=4).refinenet1.crp.convs) == 4


def test_deeplab_aspp_rates():
    dec = DeepLabV2(R18, 7)
    assert [c.dilation for c in dec.aspp.convs] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(c.in_channels == 512 and c.out_channels == 7 for c in dec.aspp.convs)


def test_offline_efficientnet_lite0_encoder():
    model = create_segmenter("refinenet", backbone="tf_efficientnet_lite0", pretrained="offline",
                             num_classes=3, features=8)
    assert model.encoder.channels == [24, 40, 112, 320]
    assert model.encoder.reductions == [4, 8, 16, 32]
    # its own normalisation, from timm's pretrained cfg
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    ref = create_backbone("tf_efficientnet_lite0", "offline")
    assert torch.equal(model.encoder.body.conv_stem.weight, ref.conv_stem.weight)
    assert torch.equal(model.encoder.body.blocks[6][0].conv_pwl.weight, ref.blocks[6][0].conv_pwl.weight)
    model.eval()
    with torch.no_grad():
        assert model(_images()).shape == (2, 3, 64, 64)
    with pytest.raises(SimmmError, match="offline"):
        create_segmenter("refinenet", backbone="resnet18", pretrained="offline")


@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0"])
def test_encoder_runs_modules_swapped_into_its_tree(backbone):
    """A module replaced in the tree after the encoder was built (SyncBatchNorm conversion) is the one that runs:
    the stem's batch norm of a converted encoder gets gradients (the old one, still referenced, would)."""
    from simmm.dist import SyncBatchNormCPU, convert_sync_batchnorm

    seg = create_segmenter("refinenet", backbone=backbone, num_classes=3, features=8)
    convert_sync_batchnorm(seg, torch.device("cpu"))
    norms = [m for m in seg.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, SyncBatchNormCPU) for m in norms)
    seg(_images()).sum().backward()
    assert all(m.weight.grad is not None for m in norms)
