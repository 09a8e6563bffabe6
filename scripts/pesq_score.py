#!/usr/bin/env python3
"""Wideband PESQ (ITU-T P.862.2) of a heard WAV against the sent one.

Usage: pesq_score.py SENT.wav HEARD.wav  -> prints the MOS-LQO score.
Both files are 48 kHz mono 16-bit as parley-quality writes them; PESQ wants 16 kHz.
"""
import sys
import wave

import numpy as np
from pesq import pesq
from scipy.signal import resample_poly


def load(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: expected mono 16-bit PCM")
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    if rate != 16000:
        data = resample_poly(data, 16000, rate)
    return data / 32768.0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ref, deg = load(sys.argv[1]), load(sys.argv[2])
    n = min(len(ref), len(deg))
    print(f"{pesq(16000, ref[:n], deg[:n], 'wb'):.3f}")


if __name__ == "__main__":
    main()
