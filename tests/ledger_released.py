"""The "released code" column of the reproduction ledger (docs/METHOD.md §5), as data: what the authors' code
(GitHub ShengtianSang/AFMA, commit b84bbc2) sets, read by hand from their files once, with the file and line.

Each entry is setting -> (what the released code does, file, line); file and line are None where the released
code has no such setting. The ledger writes the cell as `text (file line)`; tests/test_ledger_data.py and
tests/test_ledger_training.py fail when a released cell of the ledger and this table part.
"""

FLIP = "HorizontalFlip(p=0.5)"
SSR = "ShiftScaleRotate(scale_limit=0.5, rotate_limit=0, shift_limit=0.1, p=1, border_mode=0)"
NONE = ("-", None, None)


def padded(name, f, pad, crop, heights, eval_pad, eval_crop, lines):
    """CamVid and Cityscapes: their files differ in sizes and line numbers only."""
    flip, pad_line, one_of, noise, persp, eval_pad_line, eval_crop_line = lines
    return {
        "train 1": (FLIP, f, flip),
        "train 2": (f"PadIfNeeded(min_height={pad[0]}, min_width={pad[1]}, border_mode=cv2.BORDER_CONSTANT, "
                    f"value=(255, 255, 255), mask_value=0, p=1)", f, pad_line),
        "train 3": (f"OneOf([RandomSizedCrop([{heights[0]}, {heights[1]}], {crop[0]}, {crop[1]}, w2h_ratio=4 / 3, "
                    f"interpolation=1, p=1.0), RandomCrop(height={crop[0]}, width={crop[1]})], p=1.0)", f, one_of),
        "train 4": ("GaussNoise(p=0.1): 1.0's variance 10..50, per channel", f, noise),
        "train 5": ("Perspective(p=0.1): 1.0's scale 0.05..0.1, masks nearest with border 0", f, persp),
        "eval 1": (f"PadIfNeeded({eval_pad[0]}, {eval_pad[1]}): 1.0's default mirror border", f, eval_pad_line),
        "eval 2": (f"CenterCrop(height={eval_crop[0]}, width={eval_crop[1]})", f, eval_crop_line),
        f"{name}.train_size": (str(crop), f, one_of),
        f"{name}.eval_size": (str(eval_crop), f, eval_crop_line),
        f"{name}.pad_size": (str(pad), f, pad_line),
        f"{name}.eval_pad": NONE,
        f"{name}.pre_resize": NONE,
        f"{name}.border_label": ("all-zero one-hot, which the loss trains as class 0", f, pad_line),
    }


def shift_scale(name, f, size, lines, noise, persp, first="the foreground"):
    """Birds, skin lesions, LiTS: flip, shift-scale, pad + crop, noise, warp, then three one-of groups."""
    flip, ssr, pad, crop, noise_line, persp_line, eval_pad, eval_crop = lines
    return {
        "train 1": (FLIP, f, flip),
        "train 2": (SSR, f, ssr),
        "train 3": (f"PadIfNeeded(min_height={size}, min_width={size}, always_apply=True, border_mode=0)", f, pad),
        "train 4": (f"RandomCrop(height={size}, width={size})", f, crop),
        "train 5": (noise, f, noise_line),
        "train 6": (persp, f, persp_line),
        "eval 1": (f"PadIfNeeded({size}, {size}): 1.0's default mirror border", f, eval_pad),
        "eval 2": (f"CenterCrop(height={size}, width={size})", f, eval_crop),
        f"{name}.train_size": (str((size, size)), f, crop),
        f"{name}.eval_size": (str((size, size)), f, eval_crop),
        f"{name}.pad_size": NONE,
        f"{name}.eval_pad": NONE,
        f"{name}.pre_resize": NONE,
        f"{name}.border_label": (f"all-zero one-hot, which the loss trains as class 0 ({first})", f, ssr),
    }


IAA_NOISE = "IAAAdditiveGaussianNoise(p=0.2): imgaug's std 2.55..12.75, one draw for all channels"
IAA_PERSP = "IAAPerspective(p=0.5): 1.0's Perspective (its subclass there), p 0.5 whatever it is given"
PHOTOGRAPHS = [
    "OneOf([CLAHE(p=1), RandomBrightness(p=1), RandomGamma(p=1)], p=0.9)",
    "OneOf([IAASharpen(p=1), Blur(blur_limit=3, p=1), MotionBlur(blur_limit=3, p=1)], p=0.9)",
    "OneOf([RandomContrast(p=1), HueSaturationValue(p=1)], p=0.9)",
]

BIRDS = {
    **shift_scale("Birds", "data/Birds.py", 320, (71, 73, 75, 76, 78, 79, 113, 114), IAA_NOISE, IAA_PERSP),
    **{f"train {7 + k}": (text, "data/Birds.py", line)
       for k, (text, line) in enumerate(zip(PHOTOGRAPHS, (81, 90, 99)))},
    "masks": ("one-hot of value 0 with CLASSES = ['bird']", "data/Birds.py", 48),
    "Birds.VAL_FROM": ("not stated (a val folder)", None, None),
}

def shifted(table, resized):
    """The rows of `table` one step later: the skin-lesion pipelines start with the resize the released code's
    stored images had had (`resized`)."""
    def later(key):
        split, _, k = key.partition(" ")
        return f"{split} {int(k) + 1}" if split in ("train", "eval") and k.isdigit() else key
    return {"train 1": resized, "eval 1": resized, **{later(k): v for k, v in table.items()}}


STORED = ("images stored at 192x256 (evaluation pads to that size)", "data/SkinLesion.py", 104)
SKIN = shifted({
    **shift_scale("SkinLesion", "data/SkinLesion.py", 192, (62, 64, 66, 67, 69, 70, 104, 106), IAA_NOISE, IAA_PERSP),
    **{f"train {7 + k}": (text, "data/SkinLesion.py", line)
       for k, (text, line) in enumerate(zip(PHOTOGRAPHS, (72, 81, 90)))},
    "eval 1": ("PadIfNeeded(192, 256): 1.0's default mirror border", "data/SkinLesion.py", 104),
    "SkinLesion.eval_pad": ("(192, 256)", "data/SkinLesion.py", 104),
    "SkinLesion.pre_resize": STORED,
    "masks": ("one-hot of value 0 with CLASSES = ['skinlesion']", "data/SkinLesion.py", 38),
}, STORED)

LITS = {
    **shift_scale("LiTS", "data/LiTS.py", 512, (85, 86, 88, 89, 91, 92, 127, 128),
                  "GaussNoise(p=0.2) on float HU: the result clipped to [0, 1]",
                  "Perspective(p=0.5): 1.0's scale 0.05..0.1, masks nearest with border 0", "background"),
    "train 7": ("OneOf([RandomBrightnessContrast(p=1), RandomGamma(p=1)], p=0.9) on float HU: clipped to [0, 1], "
                "gamma NaN below 0", "data/LiTS.py", 94),
    "train 8": ("OneOf([Sharpen(p=1), Blur(blur_limit=3, p=1), MotionBlur(blur_limit=3, p=1)], p=0.9)",
                "data/LiTS.py", 104),
    "train 9": ("OneOf([RandomBrightnessContrast(p=1), HueSaturationValue(p=1)], p=0.9) on float HU: clipped to "
                "[0, 1]", "data/LiTS.py", 113),
    "input values": ("HU clipped to [-250, 250] as float32, then the encoder's (x/255 - mean)/std",
                     "data/LiTS.py", 73),
}

CAMVID = {
    **padded("CamVid", "data/CamVid.py", (720, 960), (480, 640), (240, 720), (720, 960), (640, 960),
             (62, 63, 66, 74, 75, 83, 84)),
    "CamVid.frame_size": ("960x720 release assumed (pads to 720x960)", "data/CamVid.py", 63),
}

CITYSCAPES = {
    **padded("Cityscapes", "data/CityScapes.py", (1024, 1024), (640, 800), (360, 1024), (1024, 2048),
             (1024, 2048), (62, 64, 67, 75, 76, 85, 86)),
    "Cityscapes.frame_size": NONE,
    "void (stock label value 255)": ("one-hot against train ids 0..19 (its own table's void is 19): 255 gets "
                                     "all zeros, trained as class 0 (road)", "data/CityScapes.py", 140),
    "classes": ("19 + void; the AFMA branches are fixed at 12 channels (`classes_num=12`): 20 classes cannot run "
                "unmodified", "models/attonimage/encoder_channelatt_img.py", 12),
}

for table in (BIRDS, SKIN, LITS, CAMVID, CITYSCAPES):
    for name in ("Birds", "SkinLesion", "LiTS", "CamVid", "Cityscapes"):
        if f"{name}.train_size" in table:
            table.setdefault(f"{name}.frame_size", NONE)
            table.setdefault(f"{name}.void_value", NONE)

DATA = {"camvid": CAMVID, "cityscapes": CITYSCAPES, "birds": BIRDS, "skinlesion": SKIN, "lits": LITS}

TRAINING = {
    "optimizer": ("Adam, weight decay 0", "main.py", 176),
    "learning rate": ("1e-4", "main.py", 175),
    "LR schedule": ("`MultiStepLR(milestones=[400, 500, 700, 800, 900], gamma=0.5)` built but `scheduler.step()` "
                    "never called: constant 1e-4", "main.py", 177),
    "epochs": ("1000", "main.py", 209),
    "batch": ("4, one process", "main.py", 87),
    "last partial batch": ("kept (DataLoader's drop_last=False): 92 steps per CamVid epoch", "main.py", 88),
    "loss weights": ("5 x NLL + 1 x MSE", "utils/losses.py", 46),
    "baseline loss (no AFMA)": ("`att_depth=-1` fails at the first batch", "main.py", 96),
    "class weights (CamVid)": ("0.257, 0.185, 4.396, 0.137, 0.918, 0.387, 3.533, 1.813, 0.725, 5.855, 8.137, 1.097",
                               "data/CamVid.py", 10),
    "PSPNet encoder": ("5 stages, output stride 8, upsampling 8", "models/pspnet/pspnet_model.py", 13),
    "PSPNet dilation": ("torchvision's `replace_stride_with_dilation=[False, True, True]`: the first block of stages "
                        "4 and 5 keeps the previous stage's dilation", "models/pspnet/pspnet_model.py", 24),
    "PSPNet head": ("3x3 convolution, dropout 0.2, 512 PSP channels", "models/pspnet/pspnet_model.py", 45),
    "UNet head": ("3x3 convolution", "models/unet/unet_model.py", 44),
    "UNet++ head": ("1x1 convolution", "models/unetplusplus/unetplusplus_model.py", 43),
    "FPN, LinkNet, DeepLabV3 heads": ("1x1 convolution", "models/fpn/fpn_model.py", 46),
    "MAnet, PAN heads": ("3x3 convolution", "models/manet/manet_model.py", 41),
    "head initialisation": ("kaiming uniform (`initialize_decoder`; `initialize_head` commented out)",
                            "models/unet/unet_model.py", 60),
}


def cell(entry):
    """The ledger's released cell of an entry: `text (file line)`."""
    text, path, line = entry
    return text if path is None else f"{text} ({path} {line})"
