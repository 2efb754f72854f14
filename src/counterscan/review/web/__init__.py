"""The review web UI served by ``counterscan serve`` beside the members' API.

Templates and static files ship in the wheel, inside this package.
"""
