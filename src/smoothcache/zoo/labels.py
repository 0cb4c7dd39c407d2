"""Class labels of the embedded pipelines: one check for every model of the zoo."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def class_label_tensor(
    class_labels: int | Sequence[int] | torch.Tensor, num_classes: int, device: torch.device | str
) -> torch.Tensor:
    """``class_labels`` as a 1-D int64 tensor on ``device``; each must lie in ``[0, num_classes - 1]``."""
    labels = torch.as_tensor(class_labels, dtype=torch.int64).reshape(-1)
    if labels.numel() == 0:
        raise ValueError("class_labels is empty")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"class_labels must lie in [0, {num_classes - 1}], got {labels.tolist()}")
    return labels.to(device)
