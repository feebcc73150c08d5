"""``nomagic playground``: a local web page that trains a network live, in the spirit of
TensorFlow Playground, on the tensor or the processes engine.

``datasets`` (the data sets and features), ``session`` (one training session per WebSocket and
the JSON message protocol), ``server`` (the Starlette app and its uvicorn runner; needs the extra
``pip install 'nomagic[playground]'``), ``static/`` (the page: plain HTML, CSS and JavaScript).
"""
