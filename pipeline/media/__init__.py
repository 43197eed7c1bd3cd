"""Video files, in one place: find ffmpeg, probe a file, normalize it to H.264 at 24 fps,
decode its frames, write one.

- `ffmpeg`: the binary (system or imageio-ffmpeg's) and how t12k runs it;
- `info`: a file's facts (PyAV), with one clear error for missing, truncated or non-video files;
- `transcode`: one ffmpeg call to H.264, constant 24 fps, bounded short side (and that command);
- `decode`: every frame as RGB uint8 through an ffmpeg pipe (what TransNet V2's reference does);
- `write`: frames to an H.264 mp4 (test corpora, the demo).
"""

from t12k.pipeline.media.decode import iter_frames, read_frames
from t12k.pipeline.media.ffmpeg import TMP_MARK, ffmpeg_exe
from t12k.pipeline.media.info import UnreadableVideo, VideoInfo, probe, read_tags, video_size
from t12k.pipeline.media.transcode import normalize, normalize_command, normalize_filters, target_size
from t12k.pipeline.media.write import write_video

__all__ = [
    "TMP_MARK",
    "UnreadableVideo",
    "VideoInfo",
    "ffmpeg_exe",
    "iter_frames",
    "normalize",
    "normalize_command",
    "normalize_filters",
    "probe",
    "read_frames",
    "read_tags",
    "target_size",
    "video_size",
    "write_video",
]
