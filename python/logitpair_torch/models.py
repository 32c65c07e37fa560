"""PyTorch reference models. Parameter and buffer names are the contract with
the Go implementation and must not change.

MadryMNIST(conv1=32, conv2=64, hidden=1024, classes=10)
    Input (N,1,28,28) in [0,1]. conv1: 5x5 conv 1->conv1, padding 2, bias, ReLU,
    MaxPool 2; conv2: 5x5 conv conv1->conv2, padding 2, bias, ReLU, MaxPool 2;
    flatten in C,H,W order; fc1: Linear(7*7*conv2 -> hidden) + ReLU;
    fc2: Linear(hidden -> classes).

ResNet9(width=64, classes=10, in_channels=3)
    David Page's DAWNBench ResNet-9 ("myrtle"), input 32x32. Every conv_bn is
    Conv2d 3x3 padding 1 bias=False (child `conv`), BatchNorm2d (child `bn`),
    ReLU. prep (in->w); layer1.conv (w->2w) + MaxPool2d(2), residual
    out = x + layer1.res2(layer1.res1(x)) (2w->2w); layer2.conv (2w->4w) +
    MaxPool2d(2); layer3.conv (4w->8w) + MaxPool2d(2), residual with
    layer3.res1/res2; AdaptiveMaxPool2d(1), flatten; fc Linear(8w -> classes,
    bias=False); logits multiplied by 0.125.

ResNetV2(depth=50|101, width=64, classes=1000, in_channels=3)
    Pre-activation bottleneck ResNet (He et al. 2016, "Identity Mappings"),
    torchvision-style strides. Stem: conv1 7x7 stride 2 padding 3 bias=False
    (in->width), MaxPool2d(3, stride 2, padding 1), no BN/ReLU in the stem.
    Stages layer1..layer4 with [3,4,6,3] (50) or [3,4,23,3] (101) blocks,
    planes width*[1,2,4,8], expansion 4, stride [1,2,2,2] on the first block of
    a stage. Block layerS.B (in -> planes*4):
        pre = relu(bn1(x))
        shortcut = shortcut(pre)  (1x1 conv, block stride, bias=False) when
                   stride != 1 or in != planes*4, else x
        out = conv1(pre)                 (1x1, in -> planes)
        out = conv2(relu(bn2(out)))      (3x3, stride, padding 1)
        out = conv3(relu(bn3(out)))      (1x1, planes -> planes*4)
        return out + shortcut
    All convs bias=False. Head: bn (BatchNorm2d over width*32) + ReLU, global
    average pool, flatten, fc Linear(width*32 -> classes) with bias.

build(name, config) maps "madry-mnist", "resnet9", "resnet-v2-50",
"resnet-v2-101" to these classes with config as keyword arguments.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MadryMNIST(nn.Module):
    def __init__(self, conv1=32, conv2=64, hidden=1024, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv1, 5, padding=2, bias=True)
        self.conv2 = nn.Conv2d(conv1, conv2, 5, padding=2, bias=True)
        self.fc1 = nn.Linear(7 * 7 * conv2, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class ConvBN(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class _Res9Layer(nn.Module):
    def __init__(self, cin, cout, residual):
        super().__init__()
        self.conv = ConvBN(cin, cout)
        if residual:
            self.res1 = ConvBN(cout, cout)
            self.res2 = ConvBN(cout, cout)
        self.residual = residual

    def forward(self, x):
        x = F.max_pool2d(self.conv(x), 2)
        if self.residual:
            x = x + self.res2(self.res1(x))
        return x


class ResNet9(nn.Module):
    def __init__(self, width=64, classes=10, in_channels=3):
        super().__init__()
        w = width
        self.prep = ConvBN(in_channels, w)
        self.layer1 = _Res9Layer(w, 2 * w, True)
        self.layer2 = _Res9Layer(2 * w, 4 * w, False)
        self.layer3 = _Res9Layer(4 * w, 8 * w, True)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(8 * w, classes, bias=False)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(torch.flatten(self.pool(x), 1)) * 0.125


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        else:
            self.shortcut = None

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        sc = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + sc


class ResNetV2(nn.Module):
    BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}

    def __init__(self, depth=50, width=64, classes=1000, in_channels=3):
        super().__init__()
        if depth not in self.BLOCKS:
            raise ValueError(f"ResNetV2: unsupported depth {depth}")
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = width
        for s, (n, stride) in enumerate(zip(self.BLOCKS[depth], [1, 2, 2, 2])):
            planes = width * (1 << s)
            blocks = []
            for b in range(n):
                blocks.append(PreActBottleneck(cin, planes, stride if b == 0 else 1))
                cin = planes * PreActBottleneck.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build(name, config):
    config = dict(config or {})
    if name == "madry-mnist":
        return MadryMNIST(**config)
    if name == "resnet9":
        return ResNet9(**config)
    if name in ("resnet-v2-50", "resnet-v2-101"):
        config.pop("depth", None)
        config.pop("image_size", None)  # logitpair's input-size check; any size works here
        return ResNetV2(depth=int(name.rsplit("-", 1)[1]), **config)
    raise ValueError(f"unknown model {name!r}")
