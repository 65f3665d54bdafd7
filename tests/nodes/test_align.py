import cv2
import numpy as np

from facerestore.nodes.align import (
    TEMPLATE_LANDMARKS,
    estimate_similarity,
    face_matte,
    invert_affine,
    scaled_template_transform,
    transform_points,
    warp_to_face,
)


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(17.0), 0.37, np.array([40.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    plate_points = (TEMPLATE_LANDMARKS - shift) @ np.linalg.inv(rot).T
    matrix = estimate_similarity(plate_points, TEMPLATE_LANDMARKS)
    assert np.allclose(matrix[:, :2], rot, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-7)


def test_point_and_image_round_trip():
    landmarks = np.array([[105.0, 80.0], [131.0, 82.0], [118.0, 97.0], [107.0, 110.0], [128.0, 111.0]])
    to_face = scaled_template_transform(landmarks, 256)
    back = transform_points(invert_affine(to_face), transform_points(to_face, landmarks))
    assert np.abs(back - landmarks).max() < 1e-9
    # A smooth image survives plate -> face -> plate closely inside the face.
    ys, xs = np.mgrid[0:200, 0:240].astype(np.float32)
    image = np.stack([np.sin(xs / 9.0), np.cos(ys / 7.0), np.sin((xs + ys) / 11.0)], 2).astype(np.float32)
    crop = warp_to_face(image, to_face, 256)
    restored = cv2.warpAffine(crop, invert_affine(to_face), (240, 200), flags=cv2.INTER_LINEAR)
    inner = (slice(85, 110), slice(108, 130))
    assert np.abs(restored[inner] - image[inner]).max() < 0.02


def test_matte_covers_the_whole_face_box_and_feathers_outside_it():
    """The detector's box of an aligned face spans about x 120-392, y 110-450 of the 512 face
    space (hairline to chin, cheek to cheek); the egg-shaped matte before left 14-28 % of it
    unrestored."""
    matte = face_matte(512)
    box = matte[110:450, 120:392]
    assert (box >= 0.999).mean() > 0.88
    assert (box > 0).mean() > 0.97
    assert not matte[:40].any() and not matte[-16:].any() and not matte[:, :40].any() and not matte[:, -40:].any()
    # Larger feathers eat inward rather than reaching the crop border.
    assert not face_matte(512, 0.5)[-16:].any()


def test_matte_is_soft_centred_and_zero_at_the_border():
    matte = face_matte(128)
    assert matte[int(128 * 285 / 512), 64] == 1.0
    border = np.concatenate([matte[0], matte[-1], matte[:, 0], matte[:, -1]])
    assert np.all(border == 0.0)
    soft = (matte > 0) & (matte < 1)
    assert soft.sum() > 0.05 * (matte > 0).sum()  # a real feather, not a hard edge
    assert np.all((matte >= 0) & (matte <= 1))
