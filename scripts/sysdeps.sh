#!/usr/bin/env bash
# Installs the system packages the project needs (PortAudio headers for pyaudio, ALSA tools
# for the audio tests). As root with apt-get it installs them; otherwise it names them once.
set -euo pipefail
need=()
[ -f /usr/include/portaudio.h ] || need+=(portaudio19-dev)
command -v aplay >/dev/null 2>&1 || need+=(alsa-utils)
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
