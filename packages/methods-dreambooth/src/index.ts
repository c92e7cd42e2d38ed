export {
  dreambooth,
  dreambooth as default,
  dreamboothOptions,
  classImagesPath,
  CLASS_IMAGES_DIR,
  GENERATE_CHUNK,
  type ClassSetSpec,
  type DreamBoothOptions,
  type DreamBoothOptionsInput,
} from "./dreambooth.js";
