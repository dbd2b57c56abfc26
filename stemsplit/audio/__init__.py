"""Audio in and out: streaming decode + resample (reader), encode + atomic write (writer).

Nothing here imports torch; blocks are float32 numpy arrays shaped `(channels, frames)`.
"""

from stemsplit.audio.formats import AUDIO_EXTENSIONS, OUTPUT_FORMATS, OutputFormat
from stemsplit.audio.reader import AudioInfo, probe, read_all, read_blocks
from stemsplit.audio.writer import PARTIAL_GLOB, StemWriter

__all__ = [
    "AUDIO_EXTENSIONS",
    "OUTPUT_FORMATS",
    "PARTIAL_GLOB",
    "AudioInfo",
    "OutputFormat",
    "StemWriter",
    "probe",
    "read_all",
    "read_blocks",
]
