"""The course's data on disk: loaders and checks for its formats (:mod:`.formats`),
synthetic sets in the same formats (:mod:`.synth`), and pretrained weights from a local
TORCH_HOME (:mod:`.weights`). Nothing here downloads anything; torch is imported only by
the functions that need it.
"""
from .formats import FORMATS, ImageFolder, Omniglot, TinyImageNet, check, read_rgb
from .synth import SHAPES, Synthesized, draw_shape, synthesize
from .weights import ARCHS, load_pretrained, weights_file

__all__ = ["ARCHS", "FORMATS", "SHAPES", "ImageFolder", "Omniglot", "Synthesized", "TinyImageNet",
           "check", "draw_shape", "load_pretrained", "read_rgb", "synthesize", "weights_file"]
