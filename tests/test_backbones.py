import pytest
import torch

from simmm.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    backbone_normalization,
    classifier_backbone,
    create_backbone,
)
from simmm.errors import SimmmError

TINY = "test_resnet"  # timm's tiny test variant of ResNet


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
