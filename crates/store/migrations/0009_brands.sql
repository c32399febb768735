-- Brands and roles: every brand gets a slug; customers belong to a brand (the brand of the
-- channel that first heard from them); users are members of brands with a role per brand;
-- the installation has owners; API tokens belong to one brand. Existing users become
-- members of every existing brand with the role they had, existing admins also owners, and
-- existing tokens belong to the first brand.

ALTER TABLE brands ADD COLUMN slug TEXT NOT NULL DEFAULT '';
UPDATE brands SET slug = lower(replace(trim(name), ' ', '-'))
    || CASE WHEN EXISTS (SELECT 1 FROM brands b WHERE b.id < brands.id
                         AND lower(replace(trim(b.name), ' ', '-')) = lower(replace(trim(brands.name), ' ', '-')))
       THEN '-' || id ELSE '' END;
CREATE UNIQUE INDEX brands_slug ON brands(slug);

ALTER TABLE customers ADD COLUMN brand_id INTEGER REFERENCES brands(id);
UPDATE customers SET brand_id = COALESCE(
    (SELECT c.brand_id FROM conversations c WHERE c.customer_id = customers.id ORDER BY c.id LIMIT 1),
    (SELECT MIN(id) FROM brands));
CREATE INDEX customers_brand ON customers(brand_id);

CREATE INDEX conversations_brand_inbox ON conversations(brand_id, status, priority, reply_due);

CREATE TABLE memberships (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    brand_id    INTEGER NOT NULL REFERENCES brands(id),
    role        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, brand_id)
);
INSERT INTO memberships (user_id, brand_id, role, created_at)
    SELECT u.id, b.id, u.role, u.created_at FROM users u CROSS JOIN brands b;

ALTER TABLE users ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
UPDATE users SET owner = 1 WHERE role = 'admin';

ALTER TABLE api_tokens ADD COLUMN brand_id INTEGER REFERENCES brands(id);
UPDATE api_tokens SET brand_id = (SELECT MIN(id) FROM brands);
