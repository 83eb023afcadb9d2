"""gbg-receiver: learns reliably when each GBG GO journey instance finishes.

Layers, imports pointing one way: ``web``, ``cli`` and ``workers`` call ``usecases``,
which call ``store``, ``gbg`` and ``domain``; everything may use ``config``, ``errors``,
``log``, ``metrics`` and ``shapes``. Importing this package does nothing else.
"""
