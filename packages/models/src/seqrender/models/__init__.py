"""seqrender.models: the plugin registry and the models composed from the seqrender packages
(Kaleido, 4Real-Video-V2). Importing it registers the built-in components."""
from seqrender.models import builtins, registry
from seqrender.models.blocks import record_max_activations
from seqrender.models.fourreal import FourReal, FourRealConfig
from seqrender.models.kaleido import Kaleido, KaleidoConfig
from seqrender.models.registry import RegistryError
from seqrender.models.sizes import KALEIDO_SIZES
from seqrender.models.views import ViewSplit, sample_num_references, sample_view_split

__all__ = [
    "FourReal", "FourRealConfig", "KALEIDO_SIZES", "Kaleido", "KaleidoConfig", "RegistryError", "ViewSplit",
    "builtins", "record_max_activations", "registry", "sample_num_references", "sample_view_split",
]
