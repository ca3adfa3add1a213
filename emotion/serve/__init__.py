"""The web page of `emotion serve` (the command is emotion/commands/serve.py).

    app.py      the routes, and create_app, which wires them to one model
    uploads.py  what a request may send: the size limit, sniffing the file's kind
    pixels.py   an image's size from its header, so an oversized one is refused undecoded
    guard.py    the Host and Origin checks and the security headers
    worker.py   one model, one inference thread; live frames before the bounded uploads queue
    camera.py   the live camera socket
    jobs.py     video jobs
    inside.py   explain's figure as PNGs for the page
    static/     the page: no build step, nothing loaded from the internet
"""
