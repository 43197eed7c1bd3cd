"""t12k: movie trailers to genre predictions (Trailers12k / DIViTA), end to end."""

__version__ = "0.1.0"

GENRES = (
    "action",
    "adventure",
    "comedy",
    "crime",
    "drama",
    "fantasy",
    "horror",
    "romance",
    "sci-fi",
    "thriller",
)
