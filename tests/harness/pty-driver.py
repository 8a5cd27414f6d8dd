"""A pseudo-terminal the test holds (harness/command.ts openTerminal): runs a command on it.

Usage: python3 pty-driver.py ROWS COLS -- COMMAND [ARG...]

The terminal is made ROWS x COLS before the command starts (TIOCSWINSZ on the master, checked by
reading it back), so nothing inside it has to set its size. The command runs as the leader of a
new session whose controlling terminal it is. Standard input is typed into the terminal; what the
terminal shows goes to standard output. Lines `resize ROWS COLS` on fd 3 resize the terminal the
way a terminal window does (the kernel then sends SIGWINCH to its foreground process group); each
is answered on standard error with `resized ROWS COLS`, or `error: ...`. The exit status is the
command's (128 + N for a signal N).
"""

import errno
import fcntl
import os
import select
import struct
import sys
import termios


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    got = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
    if got != (rows, cols):
        raise OSError(f"the terminal is {got[0]}x{got[1]} after setting {rows}x{cols}")


def answer(line):
    os.write(2, (line + "\n").encode())


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        answer("usage: pty-driver.py ROWS COLS -- COMMAND [ARG...]")
        return 2
    rows, cols, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[4:]
    master, slave = os.openpty()
    set_size(master, rows, cols)
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.closerange(3, 1024)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    os.close(slave)
    inputs = {0: b"", 3: b""}
    while True:
        ready, _, _ = select.select([master, *inputs], [], [])
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                # EIO: every process that had the terminal open has closed it.
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                break
            os.write(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                os.write(master, data)
            else:
                del inputs[0]
        if 3 in ready:
            data = os.read(3, 4096)
            if not data:
                del inputs[3]
                continue
            inputs[3] += data
            while b"\n" in inputs[3]:
                line, inputs[3] = inputs[3].split(b"\n", 1)
                words = line.decode().split()
                try:
                    if len(words) != 3 or words[0] != "resize":
                        raise ValueError(f"unknown request {line!r}")
                    set_size(master, int(words[1]), int(words[2]))
                    answer(f"resized {words[1]} {words[2]}")
                # struct.error: a size past 65535 does not fit the ioctl's unsigned shorts.
                except (OSError, ValueError, struct.error) as e:
                    answer(f"error: {e}")
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
