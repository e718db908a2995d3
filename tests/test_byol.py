import copy

import pytest
import torch
from torch import nn

from simmm.byol import (
    BYOLHeads,
    ConvProjector,
    MLPHead,
    TargetNetwork,
    byol_loss,
    copy_as_target,
    deactivate_requires_grad,
    symmetric_byol_loss,
    update_momentum,
)


def test_byol_loss_hand_values():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol_loss(p, p.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, -3 * p).item() == pytest.approx(4.0)
    assert byol_loss(p, torch.tensor([[0.0, 5.0], [1.0, 0.0]])).item() == pytest.approx(2.0)
    # batch mean of 0 (identical) and 4 (opposite)
    assert byol_loss(p, torch.tensor([[2.0, 0.0], [0.0, -1.0]])).item() == pytest.approx(2.0)
    # 60 degrees: 2 - 2 * 0.5 = 1
    sixty = torch.tensor([[0.5, 3 ** 0.5 / 2]])
    assert byol_loss(torch.tensor([[1.0, 0.0]]), sixty).item() == pytest.approx(1.0)
    z2 = torch.tensor([[0.0, 5.0], [1.0, 0.0]])
    assert symmetric_byol_loss(p, z2, p, -p).item() == pytest.approx(2.0 + 4.0)


def test_byol_loss_stops_gradient_on_target():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_head_shapes():
    mlp = MLPHead(512, 128, 128)
    assert isinstance(mlp.layers[1], nn.BatchNorm1d)
    assert mlp(torch.randn(4, 512)).shape == (4, 128)
    assert mlp(torch.randn(4, 512, 3, 3)).shape == (4, 128)  # maps are pooled
    conv = ConvProjector(32, mid=16, hidden=24, out=8)
    assert conv(torch.randn(3, 32, 5, 7)).shape == (3, 8)
    heads = BYOLHeads.for_stages([8, 16, 32, 64], mid=8, hidden=16, out=12)
    feats = [torch.randn(2, c, 6, 6) for c in (8, 16, 32, 64)]
    assert [p.shape for p in heads.forward_online(feats)] == [(2, 12)] * 4
    assert [z.shape for z in heads.forward_target(feats)] == [(2, 12)] * 4
    vec = BYOLHeads.for_vectors(512)
    assert len(vec) == 1
    assert vec.forward_online(torch.randn(4, 512))[0].shape == (4, 128)
    assert vec.predictors[0].layers[0].in_features == 128
    with pytest.raises(ValueError, match="got 3 feature maps, built for 4"):
        heads.forward_online(feats[:3])


def test_update_momentum_formula():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = copy_as_target(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online(torch.randn(5, 3))  # changes the BN running stats of the online net
    before = [p.clone() for p in ema.parameters()]
    update_momentum(online, ema, 0.9)
    for pe, b, po in zip(ema.parameters(), before, online.parameters()):
        torch.testing.assert_close(pe, 0.9 * b + 0.1 * po)
        assert not pe.requires_grad
    # the hand-made case: 0.9 * 1 + 0.1 * 3 = 1.2
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    a.weight.data.fill_(3.0)
    b.weight.data.fill_(1.0)
    update_momentum(a, b, 0.9)
    assert b.weight.item() == pytest.approx(1.2)
    # buffers copied
    for be, bo in zip(ema.buffers(), online.buffers()):
        assert torch.equal(be, bo)
    with pytest.raises(ValueError, match=r"update_momentum: models differ \(4 vs 2 parameters\)"):
        update_momentum(online, nn.Linear(3, 2), 0.9)


def test_target_helpers():
    net = nn.Linear(4, 2)
    assert all(not p.requires_grad for p in deactivate_requires_grad(copy.deepcopy(net)).parameters())
    tgt = TargetNetwork(net)
    out = tgt(torch.randn(3, 4))
    assert not out.requires_grad
    assert list(tgt.state_dict()) == ["module.weight", "module.bias"]
    with torch.no_grad():
        net.weight.add_(1.0)
    old = tgt.module.weight.clone()
    tgt.update(net, 0.99)
    torch.testing.assert_close(tgt.module.weight, 0.99 * old + 0.01 * net.weight)


def test_heads_loss_gradient_only_online():
    torch.manual_seed(0)
    heads = BYOLHeads.for_stages([4, 8], mid=4, hidden=8, out=8)
    fd = [torch.randn(3, 4, 5, 5, requires_grad=True), torch.randn(3, 8, 3, 3, requires_grad=True)]
    fn = [torch.randn(3, 4, 5, 5, requires_grad=True), torch.randn(3, 8, 3, 3, requires_grad=True)]
    td = [torch.randn(3, 4, 5, 5, requires_grad=True), torch.randn(3, 8, 3, 3, requires_grad=True)]
    tn = [torch.randn(3, 4, 5, 5, requires_grad=True), torch.randn(3, 8, 3, 3, requires_grad=True)]
    loss = heads.loss(fd, fn, td, tn)
    assert 0 <= loss.item() <= 8
    loss.backward()
    assert all(p.grad is not None for p in heads.online_parameters())
    assert all(p.grad is None for p in heads.target_projectors.parameters())
    assert all(f.grad is not None for f in fd + fn)
    assert all(f.grad is None for f in td + tn)


def test_heads_loss_hand_values():
    """Identity projectors and predictors: the loss is the mean over maps of L(f_day, f'_dark) + L(f_dark,
    f'_day), L = mean over the batch of 2 - 2 cos. Hand values (cosines per sample):
      map 1: day (1,0),(0,2)  dark (0,3),(0,1)  target day (2,0),(0,1)  target dark (0,1),(0,5)
             L(day, t_dark): cos 0, 1 -> (2 + 0)/2 = 1;  L(dark, t_day): cos 0, 1 -> 1;   sum 2
      map 2: day (1,0),(1,0)  dark (-1,0),(1,0)  target day (3,0),(1,0)  target dark (-1,0),(2,0)
             L(day, t_dark): cos -1, 1 -> (4 + 0)/2 = 2;  L(dark, t_day): cos -1, 1 -> 2;  sum 4
      mean over the 2 maps: 3.  (Pairing a view with its own target would give 0 for map 1.)"""
    heads = BYOLHeads([nn.Identity(), nn.Identity()], [nn.Identity(), nn.Identity()])
    t = torch.tensor
    day = [t([[1.0, 0.0], [0.0, 2.0]]), t([[1.0, 0.0], [1.0, 0.0]])]
    dark = [t([[0.0, 3.0], [0.0, 1.0]]), t([[-1.0, 0.0], [1.0, 0.0]])]
    t_day = [t([[2.0, 0.0], [0.0, 1.0]]), t([[3.0, 0.0], [1.0, 0.0]])]
    t_dark = [t([[0.0, 1.0], [0.0, 5.0]]), t([[-1.0, 0.0], [2.0, 0.0]])]
    assert heads.loss(day, dark, t_day, t_dark).item() == pytest.approx(3.0)
    # without target features the online ones stand in: map 1 cos 0, 1 both ways -> 2; map 2 cos -1, 1 -> 4
    assert heads.loss(day, dark).item() == pytest.approx(3.0)
    one_map = BYOLHeads([nn.Identity()], [nn.Identity()])
    assert one_map.loss(day[:1], dark[:1], t_day[:1], t_dark[:1]).item() == pytest.approx(2.0)


def test_heads_update_target_and_state_dict():
    torch.manual_seed(0)
    heads = BYOLHeads.for_vectors(16, 8, 8, 8)
    for p, t in zip(heads.projectors.parameters(), heads.target_projectors.parameters()):
        assert torch.equal(p, t) and not t.requires_grad
    with torch.no_grad():
        for p in heads.projectors.parameters():
            p.add_(1.0)
    old = [t.clone() for t in heads.target_projectors.parameters()]
    heads.update_target(0.99)
    for o, t, p in zip(old, heads.target_projectors.parameters(), heads.projectors.parameters()):
        torch.testing.assert_close(t, 0.99 * o + 0.01 * p)
    assert any(k.startswith("target_projectors.") for k in heads.state_dict())
    n_online = sum(p.numel() for p in heads.online_parameters())
    assert n_online == sum(p.numel() for p in heads.parameters() if p.requires_grad)
