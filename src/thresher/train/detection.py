"""Object detection and instance segmentation as fine-tuning objectives (issue 20): torchvision's Faster R-CNN and
Mask R-CNN on the backbone's features, sized for small images on CPUs.

000 fine-tunes a Faster R-CNN R50-C4 on VOC07, 001 and 003 Faster / Mask R-CNN on VOC and COCO. A torchvision ResNet
gets the C4 design (``head: auto`` or ``c4``): the trunk up to ``layer3`` feeds the region proposal network and the
RoI pooling, and ``layer4`` is the box head on every RoI. Other backbones with stages (small-cnn, the CIFAR ResNets)
get a feature pyramid (``fpn``, Lin et al. 2017): their last three stages of stride 2 or more, top-down and lateral
connections at ``hidden / 2`` channels, a max-pooled level above for the proposals, and a box head of two narrow fully
connected layers; ``last`` reads the last feature map alone (one level, the cheapest). Anchors are 2 and 4 cells of
each level (1, 2, 4 and 8 cells of the last map); RoIs go to the level whose cell is an eighth of their side
(FPN's rule with 8 cells in place of 224 / 16). 32 RoIs are sampled per image (torchvision's 512 are for 800 px
images of many objects). Images go in at the size they are loaded (no resizing to torchvision's 800 px), already
normalised by the dense transform. ``frozen_bn`` freezes the backbone's batch-norm statistics and affine parameters,
as detection fine-tuning from ImageNet models usually does (001 trains them: the default).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from .objective import OBJECTIVES
from .segmentation import feature_map_of, freeze_bn


class _MapBody(nn.Module):
    """The backbone as torchvision's detectors want it: ``out_channels`` and a feature map per image batch."""

    def __init__(self, backbone: nn.Module, channels: int):
        super().__init__()
        self.backbone, self.out_channels = backbone, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_map(x)


class _C4Body(nn.Module):
    """A torchvision ResNet up to its fourth stage (``layer3``, stride 16 with the ImageNet stem): the shared trunk of
    Faster R-CNN R50-C4 (000), whose fifth stage (``layer4``) is the box head on every RoI."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.backbone = resnet
        self.out_channels = int(resnet.feature_dim) // 2  # layer3's width: half of layer4's in every ResNet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.backbone
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        return r.layer3(r.layer2(r.layer1(x)))


class _C4Head(nn.Module):
    """The ResNet's ``layer4`` on pooled RoI features, then global average pooling: the C4 box head."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.layer4 = resnet.layer4  # the same module as the backbone's: pre-trained, and fine-tuned once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.layer4(x), 1), 1)


class _FPNBody(nn.Module):
    """The backbone's last three stages of stride >= 2 through torchvision's feature pyramid, with a max-pooled level
    above the coarsest (used by the proposals only): levels ``"0"``, ``"1"``, ... and ``"pool"``."""

    def __init__(self, backbone: nn.Module, channels: int):
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        strides = list(backbone.stage_strides)
        self.taps = [i for i, s in enumerate(strides) if s >= 2][-3:]
        if not self.taps:
            raise ValueError(f"{type(backbone).__name__} has no stage of stride 2 or more for a feature pyramid")
        self.strides = [strides[i] for i in self.taps]
        self.backbone, self.out_channels = backbone, channels
        self.fpn = FeaturePyramidNetwork([list(backbone.stage_channels)[i] for i in self.taps], channels,
                                         extra_blocks=LastLevelMaxPool())  # fmt: skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.backbone.forward_stages(x)
        return self.fpn(OrderedDict((str(k), maps[i]) for k, i in enumerate(self.taps)))


def _has_stages(backbone: nn.Module) -> bool:
    return all(hasattr(backbone, k) for k in ("forward_stages", "stage_channels", "stage_strides"))


def _is_torchvision_resnet(backbone: nn.Module) -> bool:
    return all(hasattr(backbone, k) for k in ("conv1", "bn1", "maxpool", "layer3", "layer4")) and hasattr(
        backbone, "forward_map"
    )


def _no_resize_transform(num_pixels_divisible: int):
    """torchvision's detection transform without its resizing and with identity normalisation: images arrive at
    their training size, normalised by thresher's dense transform."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class Transform(GeneralizedRCNNTransform):
        def resize(self, image, target=None):
            return image, target

    return Transform(1, 1, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], size_divisible=num_pixels_divisible)


@OBJECTIVES.register("detection")
class Detection(nn.Module):
    """Faster R-CNN (``masks=False``) or Mask R-CNN (``masks=True``) over the backbone's feature map."""

    transform = "dense"
    reads_targets = True  # the loop adds the dataset's boxes, classes and masks to each batch

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        masks: bool = False,
        hidden: int = 128,
        rois: int = 32,
        frozen_bn: bool = False,
        head: str = "auto",
    ):
        super().__init__()
        from torchvision.models.detection import FasterRCNN, MaskRCNN
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
        from torchvision.models.detection.rpn import AnchorGenerator
        from torchvision.ops import MultiScaleRoIAlign

        channels = feature_map_of(backbone, "the detection objective")
        if hidden < 1 or rois < 1:
            raise ValueError(f"hidden and rois must be positive, got {hidden} and {rois}")
        if head not in ("auto", "c4", "fpn", "last"):
            raise ValueError(f"head is auto, c4 (torchvision ResNets), fpn (a feature pyramid over the backbone's "
                             f"stages) or last (the last feature map), got {head!r}")  # fmt: skip
        if head == "auto":
            head = "c4" if _is_torchvision_resnet(backbone) else "fpn" if _has_stages(backbone) else "last"
        if head == "c4" and not _is_torchvision_resnet(backbone):
            raise ValueError(f"the C4 head needs a torchvision ResNet backbone, not {type(backbone).__name__}")
        if head == "fpn" and not _has_stages(backbone):
            raise ValueError(f"{type(backbone).__name__} exposes no stages (forward_stages) for a feature pyramid; "
                             "use head last")  # fmt: skip
        self.masks, self.frozen_bn, self.head = masks, frozen_bn, head
        if head == "c4":
            body: nn.Module = _C4Body(backbone)
            strides = [int(backbone.map_stride) // 2]
        elif head == "fpn":
            body = _FPNBody(backbone, max(8, hidden // 2))
            strides = [*body.strides, 2 * body.strides[-1]]  # the pooled level last
        else:
            body, strides = _MapBody(backbone, channels), [int(getattr(backbone, "map_stride", 8))]
        channels, levels = body.out_channels, [str(k) for k in range(len(strides) - (head == "fpn"))]
        # one sample per RoIAlign bin: a cell of a small image's map is a few pixels (and RoIAlign's backward is what
        # a CPU step spends most on: 2x2 samples cost twice the step); RoIs of side 8 cells of the coarsest level go
        # there, half of that one level down, ...
        top = strides[len(levels) - 1]
        pool = partial(MultiScaleRoIAlign, levels, sampling_ratio=1, canonical_scale=8 * top,
                       canonical_level=int(math.log2(top)))  # fmt: skip
        if head == "c4":  # 14 x 14 RoIs through layer4 (stride 2) to 7 x 7, pooled: the box head is the backbone's
            box = {"box_roi_pool": pool(output_size=14), "box_head": _C4Head(backbone),  # last stage
                   "box_predictor": FastRCNNPredictor(channels * 2, num_classes + 1)}  # fmt: skip
        else:
            box = {"box_roi_pool": pool(output_size=7), "box_head": TwoMLPHead(channels * 7 * 7, hidden),
                   "box_predictor": FastRCNNPredictor(hidden, num_classes + 1)}  # fmt: skip
        cells = (1, 2, 4, 8) if len(strides) == 1 else (2, 4)  # anchor sides in cells of their level
        sizes = tuple(tuple(c * s for c in cells) for s in strides)
        common = {  # torchvision's class 0 is the background: num_classes + 1 outputs
            "rpn_anchor_generator": AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes)),
            **box,
            "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 100,
            "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 50,
            "rpn_batch_size_per_image": 64, "box_batch_size_per_image": rois, "box_detections_per_img": 50,
            # AP ranks every detection: a short fine-tuning's scores sit below torchvision's 0.05 cut, which would drop
            # them all (the 50 per image bound how many are kept)
            "box_score_thresh": 0.001,
        }  # fmt: skip
        if masks:
            self.model = MaskRCNN(
                body,
                mask_roi_pool=pool(output_size=14),
                mask_head=MaskRCNNHeads(channels, (hidden // 2, hidden // 2), 1),
                mask_predictor=MaskRCNNPredictor(hidden // 2, hidden // 2, num_classes + 1),
                **common,
            )
        else:
            self.model = FasterRCNN(body, **common)
        self.model.transform = _no_resize_transform(strides[-1])
        self.backbone = backbone  # the same module: a checkpoint's backbone.* keys are the pre-trained ones
        if frozen_bn:
            freeze_bn(backbone)

    def train(self, mode: bool = True) -> Detection:
        super().train(mode)
        if self.frozen_bn:
            freeze_bn(self.backbone)
        return self

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        images = list(batch["images"])
        if self.masks and "masks" not in batch:
            raise ValueError("instance segmentation trains on masks; this dataset has boxes only")
        targets = []
        for k in range(len(images)):
            t = {"boxes": batch["boxes"][k].float(), "labels": batch["classes"][k] + 1}
            if self.masks:
                t["masks"] = batch["masks"][k].to(torch.uint8)
            targets.append(t)
        losses = self.model(images, targets)
        loss = sum(losses.values())
        n = len(images)
        return {
            "loss": loss,
            # the detector's losses are over the batch's sampled anchors and RoIs, not per image: each image is
            # charged the batch's mean (the data schedules read this)
            "per_sample_loss": loss.detach().expand(n).clone(),
            **{k: v.detach() for k, v in losses.items()},
        }

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict]:
        """Detections per image: ``boxes`` (n, 4), ``scores``, ``labels`` (category indices) and, for Mask R-CNN,
        ``masks`` (n, H, W) bool (the mask head's probabilities above one half)."""
        was = self.training
        self.eval()
        try:
            out = self.model(list(images))
        finally:
            self.train(was)
        result = []
        for o in out:
            r = {"boxes": o["boxes"].cpu().numpy(), "scores": o["scores"].cpu().numpy(),
                 "labels": (o["labels"] - 1).cpu().numpy()}  # fmt: skip
            if "masks" in o:
                r["masks"] = (o["masks"][:, 0] > 0.5).cpu().numpy()
            result.append(r)
        return result
