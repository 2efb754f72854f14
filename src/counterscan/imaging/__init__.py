"""The one safe decode path: a picture decoded once with its derived forms, and the guards against bombs."""
