#!/usr/bin/env python3
"""Counts Engine API requests: a unix-socket proxy in front of a Docker socket.

Usage: count_proxy.py LISTEN_SOCK UPSTREAM_SOCK COUNT_FILE
Every HTTP request line seen from clients is appended to COUNT_FILE
("METHOD PATH"), so a benchmark can count the calls one command makes.
"""
import os
import re
import socket
import sys
import threading

LISTEN, UPSTREAM, COUNT = sys.argv[1], sys.argv[2], sys.argv[3]
REQUEST = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")
lock = threading.Lock()


def pipe(src, dst, record):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if record:
                with lock, open(COUNT, "ab") as f:
                    for m in REQUEST.finditer(data):
                        f.write(m.group(1) + b" " + m.group(2) + b"\n")
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    if os.path.exists(LISTEN):
        os.unlink(LISTEN)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(LISTEN)
    server.listen(64)
    while True:
        client, _ = server.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(UPSTREAM)
        threading.Thread(target=pipe, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()


main()
