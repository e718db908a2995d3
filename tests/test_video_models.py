"""Video networks: inflation of 2D layers (hand values), the static-clip identity of an inflated network, I3D from a
2D ResNet's weights, torchvision's r3d_18 / r2plus1d_18 as VideoNet."""
import pytest
import torch
from torch import nn

from simmm.errors import SimmmError
from simmm.models import VideoNet, create_video_model, inflate_, inflate_conv, inflate_pool
from simmm.models.inflate import i3d_temporal_kernels


def test_inflated_convolution_by_hand():
    """A 1x1 kernel of 6 inflated over 3 frames is [2, 2, 2]. On the frames 1, 2, 4: repeated edges give
    2(1+1+2), 2(1+2+4), 2(2+4+4) = 8, 14, 20; zero padding gives 2(0+1+2), 14, 2(2+4+0) = 6, 14, 12."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(6.0)
    clip = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 3, 1, 1)
    rep = inflate_conv(conv, 3, 1, "replicate")
    assert rep.weight.flatten().tolist() == [2.0, 2.0, 2.0]
    assert rep(clip).flatten().tolist() == [8.0, 14.0, 20.0]
    assert inflate_conv(conv, 3, 1, "zeros")(clip).flatten().tolist() == [6.0, 14.0, 12.0]
    # temporal stride 2 keeps frames 0 and 2
    assert inflate_conv(conv, 3, 2, "replicate")(clip).flatten().tolist() == [8.0, 20.0]
    pool = inflate_pool(nn.MaxPool2d(3, 2, 1), time_kernel=1, time_stride=2)
    assert pool.kernel_size == (1, 3, 3) and pool.stride == (2, 2, 2) and pool.padding == (0, 1, 1)


def tiny_2d_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                        nn.Conv2d(4, 5, 3, padding=1), nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False))
    with torch.no_grad():  # BN statistics and affine away from the identity
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_a_static_clip_through_the_inflated_net_gives_the_2d_output_at_every_frame():
    import copy

    net2d = tiny_2d_net()
    frame = torch.rand(2, 3, 9, 11)
    expected = net2d(frame)
    net3d = inflate_(copy.deepcopy(net2d), {"0": (3, 1), "3": (1, 2), "4": (5, 1)})
    assert isinstance(net3d[1], nn.BatchNorm3d) and net3d[0].weight.shape == (4, 3, 3, 3, 3)
    out = net3d.eval()(frame.unsqueeze(2).expand(2, 3, 6, 9, 11))
    assert out.shape == (2, 5, 3, *expected.shape[-2:])  # time 6 -> 3 by the max-pool's temporal stride
    for t in range(out.shape[2]):
        torch.testing.assert_close(out[:, :, t], expected, rtol=1e-5, atol=1e-5)
    # training mode too: batch statistics over identical frames are the frame's statistics
    torch.testing.assert_close(net3d.train()(frame.unsqueeze(2).expand(2, 3, 6, 9, 11))[:, :, 1],
                               net2d.train()(frame), rtol=1e-4, atol=1e-5)


def test_inflate_names_unknown_layers():
    with pytest.raises(KeyError, match="no layer named 'conv9'"):
        inflate_(tiny_2d_net(), {"conv9": (3, 1)})


def test_i3d_kernels_follow_the_resnet50_pattern():
    import timm

    k = i3d_temporal_kernels(timm.create_model("resnet50"), [3, 4, 6, 3])
    assert k["conv1"] == (5, 2) and k["maxpool"] == (1, 2)
    blocks = sorted(name for name in k if name.startswith("layer"))
    assert blocks == ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1", "layer2.2.conv1",
                      "layer3.0.conv1", "layer3.2.conv1", "layer3.4.conv1", "layer4.1.conv1"]
    deep = i3d_temporal_kernels(timm.create_model("resnet10t"), [1, 1, 1, 1])
    assert deep["conv1.0"] == (5, 2) and len([n for n in deep if n.startswith("layer")]) == 4


def test_i3d_inflates_the_given_2d_weights(tmp_path):
    """I3D built from a 2D ResNet's weights file: on a static clip its pooled clip vector is the 2D network's pooled
    vector of the frame (and its stage maps have one time step per 4 frames)."""
    import timm

    torch.manual_seed(1)
    net2d = timm.create_model("resnet10t").eval()
    for m in net2d.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    torch.save(net2d.state_dict(), tmp_path / "resnet10t.pth")
    net = create_video_model("i3d", 7, pretrained=str(tmp_path / "resnet10t.pth"), backbone="resnet10t").eval()
    assert isinstance(net, VideoNet) and net.feature_channels == [64, 128, 256, 512] and net.fc.out_features == 7
    frame = torch.rand(2, 3, 64, 64)
    clip = frame.unsqueeze(2).expand(2, 3, 8, 64, 64)
    feats = net.forward_features(clip)
    assert [f.shape[2] for f in feats] == [2, 2, 2, 2]
    normalized = net.normalize(frame)  # the network owns its input normalisation (ImageNet's, from timm's cfg)
    expected = net2d.forward_head(net2d.forward_features(normalized), pre_logits=True)
    torch.testing.assert_close(net.forward_head(feats[-1], pre_logits=True), expected, rtol=1e-4, atol=1e-5)
    assert net(clip).shape == (2, 7)


def test_torchvision_video_models_and_their_weights_file(tmp_path):
    import torchvision.models.video as tvv

    torch.manual_seed(2)
    ref = tvv.r2plus1d_18()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "r2p1d.pth")
    net = create_video_model("r2plus1d_18", 11, pretrained=str(tmp_path / "r2p1d.pth"), features_only=True)
    assert net.fc is None and net.num_features == 512
    for key, value in ref.stem.state_dict().items():
        assert torch.equal(net.stem.state_dict()[key], value), key
    feats = net(torch.rand(1, 3, 4, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    with pytest.raises(SimmmError, match=r"model.pretrained: 'timm' does not fit r3d_18"):
        create_video_model("r3d_18", 11, pretrained="timm")
    with pytest.raises(SimmmError, match=r"model.arch: got 'c3d'; expected one of i3d, r3d_18, r2plus1d_18"):
        create_video_model("c3d", 11)
