"""The torch side: tokenise, batch by length, embed, score with heads. No Spark import anywhere here."""
