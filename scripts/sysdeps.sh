#!/usr/bin/env bash
# Installs the system packages the project needs: PortAudio headers for pyaudio, ALSA tools for
# the audio tests, Xvfb and xdotool for the window tests, ffmpeg for video, Mesa's EGL/GL for the headless
# renderer, FluidSynth and two General MIDI soundfonts for held-out rendered songs. As root with
# apt-get it installs them; otherwise it names them once.
set -euo pipefail
need=()
[ -f /usr/include/portaudio.h ] || need+=(portaudio19-dev)
command -v aplay >/dev/null 2>&1 || need+=(alsa-utils)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v xdotool >/dev/null 2>&1 || need+=(xdotool)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # headless, for the web page test
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need+=(timgm6mb-soundfont)
ls /usr/lib/*/libEGL_mesa.so.0 >/dev/null 2>&1 || need+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "FractalSync needs these system packages: ${need[*]}" >&2
    echo "Install them (e.g. 'sudo apt-get install ${need[*]}') and run make again." >&2
    exit 1
fi
