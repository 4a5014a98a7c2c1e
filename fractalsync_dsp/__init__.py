"""fractalsync_dsp: audio in/out, resampling, the BeatNet front end and fast micro features.

Depends on no other FractalSync package.

Example:
    >>> from fractalsync_dsp import BeatNetFrontEnd, load_audio, resample, to_mono
    >>> audio, rate = load_audio("song.ogg")                  # (frames, channels), Hz
    >>> x = resample(to_mono(audio), rate, 22050)             # (n,) float32 at 22050 Hz
    >>> feats = BeatNetFrontEnd().features(x)                 # (ceil(n/441), 272) float32
"""

from fractalsync_dsp.audio_io import (
    BLOCK_FRAMES,
    AudioLoadError,
    AudioReader,
    TruncatedAudioWarning,
    load_audio,
)
from fractalsync_dsp.block_ring import BlockRing
from fractalsync_dsp.feature_ring import FeatureRing
from fractalsync_dsp.filterbank import SparseFilterbank, log_filterbank
from fractalsync_dsp.frontend import FRAME, HOP, LAG_SAMPLES, SAMPLE_RATE, BeatNetFrontEnd
from fractalsync_dsp.micro import BAND_EDGES_HZ, MICRO_NAMES, MicroFeatures, micro_features
from fractalsync_dsp.resample import QUALITIES, StreamResampler, resample, to_mono
from fractalsync_dsp.sample_format import (
    MAX_ABS,
    NonFiniteAudioWarning,
    as_float32,
    as_float32_repaired,
)

__all__ = [
    "BAND_EDGES_HZ",
    "BLOCK_FRAMES",
    "BlockRing",
    "FRAME",
    "HOP",
    "LAG_SAMPLES",
    "MAX_ABS",
    "MICRO_NAMES",
    "QUALITIES",
    "SAMPLE_RATE",
    "AudioLoadError",
    "AudioReader",
    "BeatNetFrontEnd",
    "FeatureRing",
    "MicroFeatures",
    "NonFiniteAudioWarning",
    "SparseFilterbank",
    "StreamResampler",
    "TruncatedAudioWarning",
    "as_float32",
    "as_float32_repaired",
    "load_audio",
    "log_filterbank",
    "micro_features",
    "resample",
    "to_mono",
]
