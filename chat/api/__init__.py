"""The OpenAI-compatible API under ``/v1/`` (docs/api.md): async Django views served by Daphne.

A request becomes a stored conversation with a queued reply through ``chat.api.services`` (same limits, same
workers, same review), and the view follows that reply's deltas exactly as a websocket does
(``follow.ReplyFollower`` reuses ``chat.realtime.delivery``).

- ``errors``: OpenAI's error shape and the status each refusal gets;
- ``auth``: ``Authorization: Bearer`` keys, looked up by prefix and compared in constant time;
- ``schemas``: the request's validation (naming the parameter) and the response objects;
- ``follow``: one reply's frames, in order, from the owner's channel group and the stream log;
- ``views``, ``urls``: the endpoints.
"""
