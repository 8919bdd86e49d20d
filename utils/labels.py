"""The one label convention of every data set here: the LAST class is unlabelled (void) or background.

It is a class the network predicts and the loss trains on, and a pixel of it predicted as class c is a false
positive of c (the authors' protocol); but it gets no score of its own and is left out of every mean.
"""
from __future__ import annotations

from collections.abc import Sequence

# The mask value of pixels the data does not hold (padding, warp borders): outside every class range, so the
# confusion matrix, the NLL and the gold AFMA (whose one-hot is all zeros there) never count it as a class.
# Not 0, which is a real class (CamVid's sky); 255 because masks travel as uint8.
IGNORE_LABEL = 255


def void_index(classes: Sequence[str] | int) -> int:
    """The index of the unlabelled / background class."""
    return (classes if isinstance(classes, int) else len(classes)) - 1


def scored_classes(classes: Sequence[str]) -> list[str]:
    """The classes that get an IoU of their own, in order: all but the last."""
    return list(classes)[:-1]
