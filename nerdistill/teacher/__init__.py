"""The teacher: prompts, an OpenAI-compatible client, a response cache, a parser and a simulator."""

from nerdistill.teacher.parser import Entity, Mention, Parsed, parse_response

__all__ = ["Entity", "Mention", "Parsed", "parse_response"]
