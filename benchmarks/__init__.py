"""Side-by-side benchmarks of wsproto-lite against wsproto, websockets, aiohttp and picows.

Run ``python -m benchmarks [--quick] [--only recv,send,echo,scale]``.
"""
