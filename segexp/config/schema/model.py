"""Schema of the ``model`` group: one dataclass per builder (unet, fcn8_vgg16, autoencoder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConf:
    """Keys every model builder reads."""

    # Preset name, also the built model's name (null: the builder's name).
    name: str | None = None
    # Where the architecture comes from (an article, or "segexp default").
    source: str | None = None
    # The builder whose keys this section takes: unet | fcn8_vgg16 | autoencoder
    # (segexp.models.BUILDERS); presets, `segexp-models` and comparisons name models by it.
    builder: str = "unet"
    # The function that builds the model from this section, (cfg, input_shape, num_classes) ->
    # keras.Model: the builder's own by default; a user's callable reads the same keys.
    _target_: str = "segexp.models.unet.build_unet"
    # segmentation | reconstruction (the image itself is the target).
    task: str = "segmentation"
    # [H, W, C] fixes the input; null = the dataset's image size and channels.
    input_shape: list[int] | None = None
    # null = the dataset's class count.
    num_classes: int | None = None
    # Pixel range the model expects (images in [0, 1] are multiplied by it).
    input_range: float = 1.0


@dataclass
class UNetConf(ModelConf):
    """segexp.models.unet.build_unet: one configurable U-Net."""

    # Poolings (levels 0..depth-1, then the bottleneck at level depth).
    depth: int = 4
    # Base filters, doubled per level (or a list of depth + 1 values, the last for the bottleneck).
    filters: Any = 64
    # Convolutions per encoder, bottleneck and decoder block.
    convs_per_block: int = 2
    # Per-level overrides of convs_per_block (int or list; decoder list index 0 = full resolution).
    encoder_convs: Any = None
    bottleneck_convs: Any = None
    decoder_convs: Any = None
    # An int or [height, width].
    kernel_size: Any = 3
    # Keras initializer of every convolution.
    kernel_initializer: str = "he_normal"
    # Activation of every convolution but the head and the up-convolutions.
    activation: str = "relu"
    # same | valid. With valid padding skips are center-cropped and the output is smaller than the
    # input: the training code crops masks by segexp.models.output_crop(model) pixels per side.
    padding: str = "same"
    # Per-convolution padding, by layer name (enc1_conv2, dec0_up, dec1_conv1, ...).
    padding_overrides: dict[str, str] = field(default_factory=dict)
    # conv | transpose: layer type of the convolutions after each concatenation.
    decoder_conv: str = "conv"
    # true: conv -> BatchNormalization -> activation for every convolution except the head.
    batchnorm: bool = False
    # A rate, or a list of depth + 1 rates (levels 0..depth-1, then the bottleneck).
    dropout: Any = 0.0
    # block_end (before pooling) | after_first_conv (inside each block).
    dropout_position: str = "block_end"
    # Decoder blocks use their level's rate too.
    dropout_decoder: bool = False
    # block_end only: the skip connection takes the features after (true) or before (false) dropout.
    dropout_skip: bool = True
    # MaxPooling2D size, also the up-sampling factor.
    pool_size: int = 2
    # transpose: Conv2DTranspose(up_kernel_size, stride pool_size);
    # resize: UpSampling2D then Conv2D(up_kernel_size);
    # transpose_resize: Conv2DTranspose(up_kernel_size, stride 1) then UpSampling2D.
    upsampling: str = "transpose"
    # An int or [height, width].
    up_kernel_size: Any = 2
    # Activation of the up-convolutions.
    up_activation: str = "linear"
    # Optional keras.layers.Rescaling(rescale, rescale_offset) right after the input.
    rescale: float | None = None
    rescale_offset: float = 0.0
    # auto | sigmoid | softmax | linear (auto: 1-channel sigmoid for 2 classes, else softmax).
    head: str = "auto"


@dataclass
class FCNConf(ModelConf):
    """segexp.models.fcn.build_fcn8_vgg16: FCN-8s-style head on a VGG16 encoder."""

    builder: str = "fcn8_vgg16"
    _target_: str = "segexp.models.fcn.build_fcn8_vgg16"
    # null (random init) or a local VGG16 (no top) .h5/.keras file; never downloaded.
    weights: str | None = None
    # Freeze the VGG16 encoder; false fine-tunes it too.
    freeze_encoder: bool = True
    # Filters of fc6 and fc7 and fc6's kernel size.
    fc_filters: int = 4096
    fc_kernel_size: int = 7
    # Activation of the class-score conv (linear logits).
    score_activation: str = "linear"
    # softmax gives a K-channel output; auto would give a 1-channel sigmoid for 2 classes.
    head: str = "softmax"


@dataclass
class AutoencoderConf(ModelConf):
    """segexp.models.autoencoder.build_autoencoder: convolutional autoencoder."""

    builder: str = "autoencoder"
    _target_: str = "segexp.models.autoencoder.build_autoencoder"
    task: str = "reconstruction"
    # Stride-2 encoder convs (filters each); H and W must be divisible by 2 ** len(...).
    encoder_filters: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    activation: str = "relu"
    # Channels of the 1x1 code (layer "latent", linear).
    latent_dim: int = 2
    # Kernel of the last transposed conv.
    output_kernel_size: int = 7
    # auto = linear for reconstruction; sigmoid bounds the output to [0, 1].
    head: str = "auto"


# Builder name -> schema.
MODELS: dict[str, type[ModelConf]] = {
    "unet": UNetConf,
    "fcn8_vgg16": FCNConf,
    "autoencoder": AutoencoderConf,
}
