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

InceptionV3(classes=1000, width_div=1)
    torchvision's Inception3 (aux_logits=False, transform_input=False) with the
    same module names, at a width multiplier of 1/width_div: every conv's
    output channels c become ceil(c / width_div) and a block's input channels
    are the sum of the previous block's branch outputs. BasicConv2d is `conv`
    (no bias) + `bn` (BatchNorm2d eps 0.001) + ReLU. Stem Conv2d_1a_3x3
    (stride 2), Conv2d_2a_3x3, Conv2d_2b_3x3 (padding 1), max pool 3/2,
    Conv2d_3b_1x1, Conv2d_4a_3x3, max pool 3/2; Mixed_5b-5d (InceptionA),
    Mixed_6a (B), Mixed_6b-6e (C), Mixed_7a (D), Mixed_7b-7c (E); adaptive
    average pool to 1x1, flatten, fc. No dropout (torchvision's Dropout(0.5)
    before fc acts in training mode only; logitpair has none) and no AuxLogits
    head. At width_div=1 its state_dict names and shapes equal
    torchvision.models.inception_v3(aux_logits=False, init_weights=False)'s
    (scripts/gen-golden.py checks this when torchvision is installed).

build(name, config) maps "madry-mnist", "resnet9", "resnet-v2-50",
"resnet-v2-101", "inception-v3" to these classes with config as keyword
arguments.
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


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.out_channels = cout

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class _InceptionBlock(nn.Module):
    """Builds convs at width 1/div; self.conv(name, cin, cout, **kw) registers
    BasicConv2d `name` with ceil(cout / div) output channels and returns them."""

    def __init__(self, div):
        super().__init__()
        self._div = div

    def conv(self, name, cin, cout, **kwargs):
        m = BasicConv2d(cin, -(-cout // self._div), **kwargs)
        setattr(self, name, m)
        return m.out_channels


class InceptionA(_InceptionBlock):
    def __init__(self, cin, pool_features, div):
        super().__init__(div)
        c1 = self.conv("branch1x1", cin, 64, kernel_size=1)
        c = self.conv("branch5x5_1", cin, 48, kernel_size=1)
        c5 = self.conv("branch5x5_2", c, 64, kernel_size=5, padding=2)
        c = self.conv("branch3x3dbl_1", cin, 64, kernel_size=1)
        c = self.conv("branch3x3dbl_2", c, 96, kernel_size=3, padding=1)
        c3 = self.conv("branch3x3dbl_3", c, 96, kernel_size=3, padding=1)
        cp = self.conv("branch_pool", cin, pool_features, kernel_size=1)
        self.out_channels = c1 + c5 + c3 + cp

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(_InceptionBlock):
    def __init__(self, cin, div):
        super().__init__(div)
        c3 = self.conv("branch3x3", cin, 384, kernel_size=3, stride=2)
        c = self.conv("branch3x3dbl_1", cin, 64, kernel_size=1)
        c = self.conv("branch3x3dbl_2", c, 96, kernel_size=3, padding=1)
        cd = self.conv("branch3x3dbl_3", c, 96, kernel_size=3, stride=2)
        self.out_channels = c3 + cd + cin

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(_InceptionBlock):
    def __init__(self, cin, channels_7x7, div):
        super().__init__(div)
        c7 = channels_7x7
        c1 = self.conv("branch1x1", cin, 192, kernel_size=1)
        c = self.conv("branch7x7_1", cin, c7, kernel_size=1)
        c = self.conv("branch7x7_2", c, c7, kernel_size=(1, 7), padding=(0, 3))
        cs = self.conv("branch7x7_3", c, 192, kernel_size=(7, 1), padding=(3, 0))
        c = self.conv("branch7x7dbl_1", cin, c7, kernel_size=1)
        c = self.conv("branch7x7dbl_2", c, c7, kernel_size=(7, 1), padding=(3, 0))
        c = self.conv("branch7x7dbl_3", c, c7, kernel_size=(1, 7), padding=(0, 3))
        c = self.conv("branch7x7dbl_4", c, c7, kernel_size=(7, 1), padding=(3, 0))
        cd = self.conv("branch7x7dbl_5", c, 192, kernel_size=(1, 7), padding=(0, 3))
        cp = self.conv("branch_pool", cin, 192, kernel_size=1)
        self.out_channels = c1 + cs + cd + cp

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for i in range(2, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(_InceptionBlock):
    def __init__(self, cin, div):
        super().__init__(div)
        c = self.conv("branch3x3_1", cin, 192, kernel_size=1)
        c3 = self.conv("branch3x3_2", c, 320, kernel_size=3, stride=2)
        c = self.conv("branch7x7x3_1", cin, 192, kernel_size=1)
        c = self.conv("branch7x7x3_2", c, 192, kernel_size=(1, 7), padding=(0, 3))
        c = self.conv("branch7x7x3_3", c, 192, kernel_size=(7, 1), padding=(3, 0))
        c7 = self.conv("branch7x7x3_4", c, 192, kernel_size=3, stride=2)
        self.out_channels = c3 + c7 + cin

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for i in range(2, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(_InceptionBlock):
    def __init__(self, cin, div):
        super().__init__(div)
        c1 = self.conv("branch1x1", cin, 320, kernel_size=1)
        c = self.conv("branch3x3_1", cin, 384, kernel_size=1)
        c3 = self.conv("branch3x3_2a", c, 384, kernel_size=(1, 3), padding=(0, 1))
        c3 += self.conv("branch3x3_2b", c, 384, kernel_size=(3, 1), padding=(1, 0))
        c = self.conv("branch3x3dbl_1", cin, 448, kernel_size=1)
        c = self.conv("branch3x3dbl_2", c, 384, kernel_size=3, padding=1)
        cd = self.conv("branch3x3dbl_3a", c, 384, kernel_size=(1, 3), padding=(0, 1))
        cd += self.conv("branch3x3dbl_3b", c, 384, kernel_size=(3, 1), padding=(1, 0))
        cp = self.conv("branch_pool", cin, 192, kernel_size=1)
        self.out_channels = c1 + c3 + cd + cp

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionV3(_InceptionBlock):
    def __init__(self, classes=1000, width_div=1):
        super().__init__(width_div)
        d = width_div
        c = self.conv("Conv2d_1a_3x3", 3, 32, kernel_size=3, stride=2)
        c = self.conv("Conv2d_2a_3x3", c, 32, kernel_size=3)
        c = self.conv("Conv2d_2b_3x3", c, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        c = self.conv("Conv2d_3b_1x1", c, 80, kernel_size=1)
        c = self.conv("Conv2d_4a_3x3", c, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(c, 32, d)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, 64, d)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, 64, d)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, d)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, 128, d)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, 160, d)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, 160, d)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, 192, d)
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, d)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, d)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, d)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.Mixed_7c.out_channels, classes)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool1(x)
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for b in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, "Mixed_" + b)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


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
    if name == "inception-v3":
        config.pop("image_size", None)  # logitpair's input-size check; any size >= 75 works here
        return InceptionV3(**config)
    raise ValueError(f"unknown model {name!r}")
