"""The live Julia-set visual: it pulses on the beat and changes character with the song's sections.

    python examples/live_julia.py                    # the demo song: a window, or a video
    python examples/live_julia.py --audio song.mp3   # any file
    python examples/live_julia.py --mic [--device N] # listen live (window)
    python examples/live_julia.py --list-devices
    python examples/live_julia.py --out clip.mp4 --seconds 20 [--start S]

With a display, a window shows the picture while the song plays (keys: space taps the tempo and
sets the phase, arrows nudge the phase, F fullscreen, H overlay, Esc quits). Without a display
it renders the song to demo_output/live_julia.mp4 (or --out) with its audio, causally: frame k
shows what the live app shows at stream time k / fps. See examples/julia/app.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.julia.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
