"""Exceptions whose messages tell the user what to do."""


class MdeRosError(Exception):
    """Base class: the message is meant for a person and names the remedy."""


class ModelNotFoundError(MdeRosError):
    """A model name, checkpoint or ONNX file could not be resolved."""


class InvalidModelError(MdeRosError):
    """A model file exists but is corrupt or does not follow the ONNX contract."""


class BackendUnavailableError(MdeRosError):
    """The requested inference backend cannot run on this machine."""


class InvalidInputError(MdeRosError):
    """An input frame, image message or CameraInfo cannot be used."""
