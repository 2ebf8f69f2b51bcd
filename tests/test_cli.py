"""Command-line behaviour shared by every subcommand."""

import subprocess
import sys


def test_a_closed_pipe_ends_quietly():
    # `pmsim costs | head -1`: the reader goes away; pmsim must not print a traceback.
    p = subprocess.Popen(
        [sys.executable, "-m", "pmsim", "costs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()
    err = p.stderr.read().decode()
    rc = p.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert rc == 141
