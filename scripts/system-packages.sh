#!/usr/bin/env bash
# The system packages the test tiers need (Debian/Ubuntu names): Chromium for the browser
# tests, espeak-ng + sox for the fake microphone, libgl1 for OpenCV, coturn for the TURN
# relay test, fonts-noto-cjk so the Korean room renders Hangul in screenshots,
# speech-dispatcher + its espeak-ng module so headless Chromium can read the room's
# questions aloud (deploy/speech_synthesis.py; otherwise speechSynthesis fails). Installed
# with apt-get when it can (root, or passwordless sudo); otherwise says what to install.
# `--llm-build`: instead, the tools that build llama-cpp-python from source (a C/C++
# compiler, cmake, ninja), for `scripts/setup.sh --local-llm`.
set -euo pipefail

need=()
if [ "${1:-}" = --llm-build ]; then
  purpose="building llama-cpp-python (scripts/setup.sh --local-llm)"
  command -v gcc >/dev/null 2>&1 || need+=(gcc)
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
else
  purpose="the tests"
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
  command -v sox >/dev/null 2>&1 || need+=(sox)
  command -v turnserver >/dev/null 2>&1 || need+=(coturn)
  ldconfig -p 2>/dev/null | grep -q 'libGL\.so\.1' || need+=(libgl1)
  command -v speech-dispatcher >/dev/null 2>&1 || need+=(speech-dispatcher)
  [ -e /usr/lib/speech-dispatcher-modules/sd_espeak-ng ] || need+=(speech-dispatcher-espeak-ng)
  if ! { command -v fc-list >/dev/null 2>&1 && fc-list :lang=ko 2>/dev/null | grep -q .; }; then
    need+=(fonts-noto-cjk)
  fi
fi
[ ${#need[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "intervue: $purpose needs these system packages: ${need[*]}" >&2
      echo "  install them with: sudo apt-get install ${need[*]}" >&2
      exit 1
    fi
  fi
  echo "intervue: installing system packages for $purpose: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "intervue: $purpose needs these system packages: ${need[*]} (no apt-get here:" >&2
  echo "  install them with your system's package manager)" >&2
  exit 1
fi
