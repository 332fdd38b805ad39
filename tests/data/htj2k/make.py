"""Write the HTJ2K codestreams of the codec corpus (tests/codec_corpus.py) with OpenJPH's ``ojph_compress``.

No encoder that installs from a wheel writes HTJ2K (pydicom has none; ``ojph`` on PyPI is a source build), so
these small files are made once and kept: ``apt-get install openjph-tools`` (Debian 12: OpenJPH 0.9), then
``python tests/data/htj2k/make.py``. The pictures are the corpus's own (``htj2k_unsigned16`` and
``htj2k_grey8``): lossless 16-bit unsigned (two frames, the encoder's default RPCL order) and lossy 8-bit.
Signed samples are not among them: OpenJPH 0.9's raw reader and pylibjpeg-openjpeg 2.6 disagree on them
(every signed codestream tried decodes saturated), which was not pursued further.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.codec_corpus import COLUMNS, ROWS, htj2k_grey8, htj2k_unsigned16  # noqa: E402


def _compress(raw: Path, out: Path, *options: str) -> None:
    subprocess.run(["ojph_compress", "-i", str(raw), "-o", str(out), "-num_decomps", "3", *options], check=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for index, frame in enumerate(htj2k_unsigned16()):
            raw = Path(scratch) / f"frame{index}.yuv"
            frame.astype("<u2").tofile(raw)
            raw_format = ["-dims", f"{{{COLUMNS},{ROWS}}}", "-num_comps", "1", "-signed", "false", "-bit_depth", "16"]
            _compress(raw, HERE / f"lossless-u16-frame{index}.j2c", *raw_format, "-downsamp", "{1,1}", "-reversible",
                      "true")  # fmt: skip
        pgm = Path(scratch) / "grey.pgm"
        pgm.write_bytes(f"P5\n{COLUMNS} {ROWS}\n255\n".encode() + htj2k_grey8().tobytes())
        _compress(pgm, HERE / "lossy-u8.j2c", "-reversible", "false", "-qstep", "0.01")


if __name__ == "__main__":
    main()
