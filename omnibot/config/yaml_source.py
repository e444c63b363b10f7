"""Parse YAML into plain Python values and remember the line of every key."""

import typing

import yaml


class YamlSyntaxError(ValueError):
    """The file is not valid YAML; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: typing.Optional[int]):
        super().__init__(message)
        self.line = line


def parse_with_lines(text: str) -> typing.Tuple[typing.Any, typing.Dict[tuple, int]]:
    """Parse ``text`` as YAML.

    Returns:
        ``(data, lines)`` where ``lines`` maps each key path tuple, such as
        ``("handlers", "message_handlers", 2, "match_type")``, to the 1-based
        line of that key (or list item) in the text.

    Raises:
        YamlSyntaxError: The text is not valid YAML.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise YamlSyntaxError(f"invalid YAML: {problem}", line) from None

    if node is None:
        return None, {}

    lines: typing.Dict[tuple, int] = {}
    constructor = yaml.SafeLoader("")
    try:
        data = _build(node, (), lines, constructor)
    except yaml.YAMLError as error:
        # For example a !!python/object tag, which the safe loader rejects.
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise YamlSyntaxError(f"invalid YAML: {problem}", line) from None
    return data, lines


def _build(node, path, lines, constructor):
    lines.setdefault(path, node.start_mark.line + 1)

    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            child = path + (key,)
            lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, lines, constructor)
        return result

    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, path + (index,), lines, constructor)
            for index, item in enumerate(node.value)
        ]

    return constructor.construct_object(node, deep=True)
