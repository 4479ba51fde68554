"""The serving gateway's data plane: pure ASGI, no SQL per request, pooled upstreams."""
